//! Single DES in safe Rust, built for the card hot path: the combined S-box and P-permutation
//! ("SP") tables of Eric Young's libdes and Richard Outerbridge's d3des, the design OpenSSL's
//! `DES_SPtrans` still uses.
//!
//! Each round of DES is an expansion E, a key XOR, eight S-box lookups and a bit permutation P.
//! Here the state is kept rotated left by one bit, so that E becomes two words (the state and the
//! state rotated by four) from which the eight 6-bit S-box inputs are read a byte apart; each
//! S-box table already holds its output moved through P (and rotated the same way), so a round
//! is two XORs with key words, eight table lookups and eight XORs. The key schedule is stored in
//! the same shape, as 32 `u32` words. The initial and final permutations are done by five
//! "swap-move" steps each, and only once around a 3DES EDE operation (as OpenSSL's
//! `DES_encrypt3`), or once around a whole CBC chain (see [`Halves`]).
//!
//! The tables are computed at compile time from the tables printed in FIPS 46-3, so that what is
//! written here can be read against the standard; tests check the result against the FIPS 81 and
//! NIST SP 800-20 vectors and against the RustCrypto `des` crate.
//!
//! **Side channels**: the S-box lookups are memory accesses whose addresses depend on the key
//! and the data, as in every table-driven software DES (the RustCrypto crate and OpenSSL's
//! included), and so are the key schedule's PC-2 lookups on the key. The SP tables are 2 KiB
//! and stay in the L1 cache on the host, and an attacker would need to run code on the same
//! core; keys that must resist that belong in an HSM, which is what the `SecurityModule`
//! interface is for.
//!
//! **Invariant**: no allocation and no panic: every table index is masked to the table's size.
//! Key schedules zero themselves on drop.

use zeroize::Zeroize;

/// Size of a DES block and of a DES key, in bytes.
const BLOCK_BYTES: usize = 8;
/// DES rounds per block.
const ROUNDS: usize = 16;
/// Key schedule words: two per round (the even and the odd S-boxes' 6-bit key groups).
const SCHEDULE_WORDS: usize = 2 * ROUNDS;

/// FIPS 46-3 S-boxes as printed: `S[box][row][column]`, the row chosen by the first and last of
/// the six input bits and the column by the middle four.
#[rustfmt::skip]
const S_BOXES: [[[u8; 16]; 4]; 8] = [
    [
        [14,  4, 13,  1,  2, 15, 11,  8,  3, 10,  6, 12,  5,  9,  0,  7],
        [ 0, 15,  7,  4, 14,  2, 13,  1, 10,  6, 12, 11,  9,  5,  3,  8],
        [ 4,  1, 14,  8, 13,  6,  2, 11, 15, 12,  9,  7,  3, 10,  5,  0],
        [15, 12,  8,  2,  4,  9,  1,  7,  5, 11,  3, 14, 10,  0,  6, 13],
    ],
    [
        [15,  1,  8, 14,  6, 11,  3,  4,  9,  7,  2, 13, 12,  0,  5, 10],
        [ 3, 13,  4,  7, 15,  2,  8, 14, 12,  0,  1, 10,  6,  9, 11,  5],
        [ 0, 14,  7, 11, 10,  4, 13,  1,  5,  8, 12,  6,  9,  3,  2, 15],
        [13,  8, 10,  1,  3, 15,  4,  2, 11,  6,  7, 12,  0,  5, 14,  9],
    ],
    [
        [10,  0,  9, 14,  6,  3, 15,  5,  1, 13, 12,  7, 11,  4,  2,  8],
        [13,  7,  0,  9,  3,  4,  6, 10,  2,  8,  5, 14, 12, 11, 15,  1],
        [13,  6,  4,  9,  8, 15,  3,  0, 11,  1,  2, 12,  5, 10, 14,  7],
        [ 1, 10, 13,  0,  6,  9,  8,  7,  4, 15, 14,  3, 11,  5,  2, 12],
    ],
    [
        [ 7, 13, 14,  3,  0,  6,  9, 10,  1,  2,  8,  5, 11, 12,  4, 15],
        [13,  8, 11,  5,  6, 15,  0,  3,  4,  7,  2, 12,  1, 10, 14,  9],
        [10,  6,  9,  0, 12, 11,  7, 13, 15,  1,  3, 14,  5,  2,  8,  4],
        [ 3, 15,  0,  6, 10,  1, 13,  8,  9,  4,  5, 11, 12,  7,  2, 14],
    ],
    [
        [ 2, 12,  4,  1,  7, 10, 11,  6,  8,  5,  3, 15, 13,  0, 14,  9],
        [14, 11,  2, 12,  4,  7, 13,  1,  5,  0, 15, 10,  3,  9,  8,  6],
        [ 4,  2,  1, 11, 10, 13,  7,  8, 15,  9, 12,  5,  6,  3,  0, 14],
        [11,  8, 12,  7,  1, 14,  2, 13,  6, 15,  0,  9, 10,  4,  5,  3],
    ],
    [
        [12,  1, 10, 15,  9,  2,  6,  8,  0, 13,  3,  4, 14,  7,  5, 11],
        [10, 15,  4,  2,  7, 12,  9,  5,  6,  1, 13, 14,  0, 11,  3,  8],
        [ 9, 14, 15,  5,  2,  8, 12,  3,  7,  0,  4, 10,  1, 13, 11,  6],
        [ 4,  3,  2, 12,  9,  5, 15, 10, 11, 14,  1,  7,  6,  0,  8, 13],
    ],
    [
        [ 4, 11,  2, 14, 15,  0,  8, 13,  3, 12,  9,  7,  5, 10,  6,  1],
        [13,  0, 11,  7,  4,  9,  1, 10, 14,  3,  5, 12,  2, 15,  8,  6],
        [ 1,  4, 11, 13, 12,  3,  7, 14, 10, 15,  6,  8,  0,  5,  9,  2],
        [ 6, 11, 13,  8,  1,  4, 10,  7,  9,  5,  0, 15, 14,  2,  3, 12],
    ],
    [
        [13,  2,  8,  4,  6, 15, 11,  1, 10,  9,  3, 14,  5,  0, 12,  7],
        [ 1, 15, 13,  8, 10,  3,  7,  4, 12,  5,  6, 11,  0, 14,  9,  2],
        [ 7, 11,  4,  1,  9, 12, 14,  2,  0,  6, 10, 13, 15,  3,  5,  8],
        [ 2,  1, 14,  7,  4, 10,  8, 13, 15, 12,  9,  0,  3,  5,  6, 11],
    ],
];

/// FIPS 46-3 permutation P: output bit `i` (1-based, most significant first) is input bit `P[i]`.
#[rustfmt::skip]
const P: [u8; 32] = [
    16,  7, 20, 21, 29, 12, 28, 17,  1, 15, 23, 26,  5, 18, 31, 10,
     2,  8, 24, 14, 32, 27,  3,  9, 19, 13, 30,  6, 22, 11,  4, 25,
];

/// FIPS 46-3 permuted choice 1: the 56 key bits (C then D) chosen from the 64 of the key.
#[rustfmt::skip]
const PC1: [u8; 56] = [
    57, 49, 41, 33, 25, 17,  9,  1, 58, 50, 42, 34, 26, 18,
    10,  2, 59, 51, 43, 35, 27, 19, 11,  3, 60, 52, 44, 36,
    63, 55, 47, 39, 31, 23, 15,  7, 62, 54, 46, 38, 30, 22,
    14,  6, 61, 53, 45, 37, 29, 21, 13,  5, 28, 20, 12,  4,
];

/// FIPS 46-3 permuted choice 2: the 48 bits of a round key chosen from C ‖ D. The first 24 come
/// from C and the last 24 from D.
#[rustfmt::skip]
const PC2: [u8; 48] = [
    14, 17, 11, 24,  1,  5,  3, 28, 15,  6, 21, 10,
    23, 19, 12,  4, 26,  8, 16,  7, 27, 20, 13,  2,
    41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48,
    44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];

/// Left rotations of C and D before each round.
const KEY_SHIFTS: [u32; ROUNDS] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];

/// Where S-box `box_index`'s 6-bit input sits in the round's two words: even boxes in the
/// state rotated right by four, odd boxes in the state itself, box 0/1 in the top byte, 6/7 in
/// the bottom one (the layout of d3des).
const fn s_box_shift(box_index: usize) -> u32 {
    24 - 8 * (box_index as u32 / 2)
}

/// `SP[box][input]`: S-box `box` applied to the 6-bit `input` (first bit most significant), its
/// 4-bit output placed at its position in the 32-bit S output, moved through P and rotated left
/// by one like the state.
const SP: [[u32; 64]; 8] = sp_tables();

const fn sp_tables() -> [[u32; 64]; 8] {
    let mut tables = [[0_u32; 64]; 8];
    let mut box_index = 0;
    while box_index < 8 {
        let mut input = 0;
        while input < 64 {
            let row = ((input >> 4) & 0b10) | (input & 0b1);
            let column = (input >> 1) & 0b1111;
            let output = S_BOXES[box_index][row][column] as u32;
            // S output bit `4 * box + k` (0-based from the most significant end).
            let mut permuted = 0_u32;
            let mut output_bit = 0;
            while output_bit < 4 {
                if (output >> (3 - output_bit)) & 1 == 1 {
                    let source_position = (4 * box_index + output_bit + 1) as u8;
                    let mut target = 0;
                    while target < 32 {
                        if P[target] == source_position {
                            permuted |= 1 << (31 - target);
                        }
                        target += 1;
                    }
                }
                output_bit += 1;
            }
            tables[box_index][input] = permuted.rotate_left(1);
            input += 1;
        }
        box_index += 1;
    }
    tables
}

/// `PC2_PACKED[chunk][value]`: the bits of the round-key word pair (even boxes' groups in the
/// high half, odd boxes' in the low half, placed as [`s_box_shift`] says) contributed by the
/// 7-bit `chunk` of C ‖ D (chunks 0–3 are C, 4–7 are D) when it equals `value`.
const PC2_PACKED: [[u64; 128]; 8] = pc2_packed_tables();

const fn pc2_packed_tables() -> [[u64; 128]; 8] {
    // Where each bit of C ‖ D (0-based position) lands in the packed word pair, if anywhere.
    let mut landing = [0_u64; 56];
    let mut key_bit = 0;
    while key_bit < 48 {
        let box_index = key_bit / 6;
        let weight = 5 - (key_bit % 6) as u32;
        let half_shift = if box_index % 2 == 0 { 32 } else { 0 };
        landing[PC2[key_bit] as usize - 1] = 1 << (half_shift + s_box_shift(box_index) + weight);
        key_bit += 1;
    }
    let mut tables = [[0_u64; 128]; 8];
    let mut chunk = 0;
    while chunk < 8 {
        let mut value = 0;
        while value < 128 {
            let mut packed = 0_u64;
            let mut bit = 0;
            while bit < 7 {
                if (value >> (6 - bit)) & 1 == 1 {
                    packed |= landing[7 * chunk + bit];
                }
                bit += 1;
            }
            tables[chunk][value] = packed;
            value += 1;
        }
        chunk += 1;
    }
    tables
}

/// A DES block inside the initial permutation: the two halves, each rotated left by one bit.
///
/// IP is a bit permutation, hence linear: IP(x ⊕ y) = IP(x) ⊕ IP(y). A CBC chain can therefore
/// stay in this domain from block to block, XOR-ing in each message block after its own IP, and
/// leave it once at the end: half the permutations of a per-block encryption.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Halves {
    left: u32,
    right: u32,
}

impl Halves {
    /// The block XOR `other`, both in the permuted domain.
    #[inline]
    pub(crate) fn xor(self, other: Halves) -> Halves {
        Halves { left: self.left ^ other.left, right: self.right ^ other.right }
    }
}

/// One swap-move step: exchanges the bits of `a` selected by `mask << shift` with the bits of
/// `b` selected by `mask`.
#[inline(always)]
fn swap_move(a: &mut u32, b: &mut u32, shift: u32, mask: u32) {
    let exchanged = ((*a >> shift) ^ *b) & mask;
    *b ^= exchanged;
    *a ^= exchanged << shift;
}

/// The initial permutation IP, leaving both halves rotated left by one bit.
#[inline]
pub(crate) fn initial_permutation(block: &[u8; BLOCK_BYTES]) -> Halves {
    let whole = u64::from_be_bytes(*block);
    let mut left = (whole >> 32) as u32;
    let mut right = whole as u32;
    swap_move(&mut left, &mut right, 4, 0x0F0F_0F0F);
    swap_move(&mut left, &mut right, 16, 0x0000_FFFF);
    swap_move(&mut right, &mut left, 2, 0x3333_3333);
    swap_move(&mut right, &mut left, 8, 0x00FF_00FF);
    right = right.rotate_left(1);
    let exchanged = (left ^ right) & 0xAAAA_AAAA;
    left ^= exchanged;
    right ^= exchanged;
    left = left.rotate_left(1);
    Halves { left, right }
}

/// The final permutation FP = IP⁻¹, from the rotated halves.
#[inline]
pub(crate) fn final_permutation(halves: Halves) -> [u8; BLOCK_BYTES] {
    let Halves { mut left, mut right } = halves;
    left = left.rotate_right(1);
    let exchanged = (left ^ right) & 0xAAAA_AAAA;
    left ^= exchanged;
    right ^= exchanged;
    right = right.rotate_right(1);
    swap_move(&mut right, &mut left, 8, 0x00FF_00FF);
    swap_move(&mut right, &mut left, 2, 0x3333_3333);
    swap_move(&mut left, &mut right, 16, 0x0000_FFFF);
    swap_move(&mut left, &mut right, 4, 0x0F0F_0F0F);
    ((u64::from(left) << 32) | u64::from(right)).to_be_bytes()
}

/// The round function f(R, K) for the rotated half `right` and the round's two key words.
#[inline(always)]
fn feistel(right: u32, even_key: u32, odd_key: u32) -> u32 {
    let even = right.rotate_right(4) ^ even_key;
    let odd = right ^ odd_key;
    // The eight outputs occupy disjoint bits (P is a permutation), so OR, addition and XOR all
    // combine them alike. Mixing the three keeps the compiler from re-associating a balanced
    // tree into one chain of eight XORs: the loads are independent, and the round's latency is
    // what a CBC chain waits for.
    let even_high = SP[0][(even >> 24) as usize & 0x3F] | SP[2][(even >> 16) as usize & 0x3F];
    let even_low = SP[4][(even >> 8) as usize & 0x3F] | SP[6][even as usize & 0x3F];
    let odd_high = SP[1][(odd >> 24) as usize & 0x3F] | SP[3][(odd >> 16) as usize & 0x3F];
    let odd_low = SP[5][(odd >> 8) as usize & 0x3F] | SP[7][odd as usize & 0x3F];
    even_high.wrapping_add(even_low) ^ odd_high.wrapping_add(odd_low)
}

/// A single-DES key schedule: the 16 round keys as 32 words shaped for [`feistel`].
#[derive(Clone)]
pub(crate) struct KeySchedule {
    words: [u32; SCHEDULE_WORDS],
}

impl KeySchedule {
    /// Expands a key. Parity bits (the low bit of each byte) are ignored, as DES does.
    pub(crate) fn new(key: &[u8; BLOCK_BYTES]) -> KeySchedule {
        let key_bits = u64::from_be_bytes(*key);
        let mut choice = 0_u64;
        for position in PC1 {
            choice = (choice << 1) | ((key_bits >> (64 - u32::from(position))) & 1);
        }
        let mut c = (choice >> 28) as u32;
        let mut d = (choice as u32) & 0x0FFF_FFFF;
        let mut words = [0_u32; SCHEDULE_WORDS];
        for (round_words, shift) in words.chunks_exact_mut(2).zip(KEY_SHIFTS) {
            c = ((c << shift) | (c >> (28 - shift))) & 0x0FFF_FFFF;
            d = ((d << shift) | (d >> (28 - shift))) & 0x0FFF_FFFF;
            let both = (u64::from(c) << 28) | u64::from(d);
            let mut packed = 0_u64;
            for (chunk, table) in PC2_PACKED.iter().enumerate() {
                packed |= table[(both >> (49 - 7 * chunk)) as usize & 0x7F];
            }
            for (word, value) in round_words.iter_mut().zip([(packed >> 32) as u32, packed as u32]) {
                *word = value;
            }
        }
        choice.zeroize();
        c.zeroize();
        d.zeroize();
        KeySchedule { words }
    }

    /// The 16 rounds of encryption, inside the permutations. The result is the pre-output block
    /// R16 ‖ L16, which [`final_permutation`] turns into the ciphertext and which is also what
    /// the next DES operation of an EDE chain takes as its input.
    #[inline]
    pub(crate) fn encrypt_permuted(&self, block: Halves) -> Halves {
        let Halves { mut left, mut right } = block;
        for round_pair in self.words.chunks_exact(4) {
            if let [even_first, odd_first, even_second, odd_second] = *round_pair {
                left ^= feistel(right, even_first, odd_first);
                right ^= feistel(left, even_second, odd_second);
            }
        }
        Halves { left: right, right: left }
    }

    /// The 16 rounds of decryption (the round keys in reverse order), inside the permutations.
    #[inline]
    pub(crate) fn decrypt_permuted(&self, block: Halves) -> Halves {
        let Halves { mut left, mut right } = block;
        for round_pair in self.words.rchunks_exact(4) {
            if let [even_second, odd_second, even_first, odd_first] = *round_pair {
                left ^= feistel(right, even_first, odd_first);
                right ^= feistel(left, even_second, odd_second);
            }
        }
        Halves { left: right, right: left }
    }

    /// DES-ECB encryption of one block.
    pub(crate) fn encrypt_block(&self, block: &[u8; BLOCK_BYTES]) -> [u8; BLOCK_BYTES] {
        final_permutation(self.encrypt_permuted(initial_permutation(block)))
    }

    /// DES-ECB decryption of one block.
    pub(crate) fn decrypt_block(&self, block: &[u8; BLOCK_BYTES]) -> [u8; BLOCK_BYTES] {
        final_permutation(self.decrypt_permuted(initial_permutation(block)))
    }
}

impl Drop for KeySchedule {
    fn drop(&mut self) {
        self.words.zeroize();
    }
}

/// 3DES EDE encryption E(K3, D(K2, E(K1, block))), with IP and FP applied once around the three.
pub(crate) fn ede_encrypt(keys: [&KeySchedule; 3], block: &[u8; BLOCK_BYTES]) -> [u8; BLOCK_BYTES] {
    let [first, second, third] = keys;
    let permuted = initial_permutation(block);
    final_permutation(third.encrypt_permuted(second.decrypt_permuted(first.encrypt_permuted(permuted))))
}

/// 3DES EDE decryption D(K1, E(K2, D(K3, block))), with IP and FP applied once around the three.
pub(crate) fn ede_decrypt(keys: [&KeySchedule; 3], block: &[u8; BLOCK_BYTES]) -> [u8; BLOCK_BYTES] {
    let [first, second, third] = keys;
    let permuted = initial_permutation(block);
    final_permutation(first.decrypt_permuted(second.encrypt_permuted(third.decrypt_permuted(permuted))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS 46-3 initial permutation: output bit `i` is input bit `IP[i]`.
    #[rustfmt::skip]
    const IP: [u8; 64] = [
        58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4,
        62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
        57, 49, 41, 33, 25, 17,  9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
        61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
    ];

    fn textbook_ip(block: u64) -> u64 {
        IP.iter().fold(0, |out, &position| (out << 1) | ((block >> (64 - u32::from(position))) & 1))
    }

    fn hex_block(text: &str) -> [u8; 8] {
        let mut out = [0; 8];
        hex::decode_to_slice(text, &mut out).unwrap();
        out
    }

    #[test]
    fn swap_moves_are_the_textbook_permutations() {
        let mut value = 0x0123_4567_89AB_CDEF_u64;
        for _ in 0..200 {
            let block = value.to_be_bytes();
            let halves = initial_permutation(&block);
            let expected = textbook_ip(value);
            assert_eq!(halves.left, ((expected >> 32) as u32).rotate_left(1));
            assert_eq!(halves.right, (expected as u32).rotate_left(1));
            assert_eq!(final_permutation(halves), block);
            value = value.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
        }
        for bit in 0..64 {
            let block = (1_u64 << bit).to_be_bytes();
            assert_eq!(final_permutation(initial_permutation(&block)), block);
        }
    }

    /// (key, plaintext, ciphertext): the FIPS 81 example and samples of NIST SP 800-20's
    /// known-answer tables A.1 to A.5 (each also checked with OpenSSL's `des-ecb`).
    const VECTORS: [(&str, &str, &str); 12] = [
        // FIPS 81: "Now is t" under 0123456789ABCDEF.
        ("0123456789ABCDEF", "4E6F772069732074", "3FA40E8A984D4815"),
        // SP 800-20 A.1, variable plaintext, key 0101...01.
        ("0101010101010101", "8000000000000000", "95F8A5E5DD31D900"),
        ("0101010101010101", "0000000000000001", "166B40B44ABA4BD6"),
        // SP 800-20 A.2, inverse permutation known-answer (A.1 backwards).
        ("0101010101010101", "95F8A5E5DD31D900", "8000000000000000"),
        // SP 800-20 A.3, variable key, plaintext 0.
        ("8001010101010101", "0000000000000000", "95A8D72813DAA94D"),
        ("0101010101010102", "0000000000000000", "869EFD7F9F265A09"),
        // SP 800-20 A.4, permutation operation known-answer.
        ("1046913489980131", "0000000000000000", "88D55E54F54C97B4"),
        ("1007103489988020", "0000000000000000", "0C0CC00C83EA48FD"),
        // SP 800-20 A.5, substitution table known-answer.
        ("7CA110454A1A6E57", "01A1D6D039776742", "690F5B0D9A26939B"),
        ("0131D9619DC1376E", "5CD54CA83DEF57DA", "7A389D10354BD271"),
        ("07A1133E4A0B2686", "0248D43806F67172", "868EBB51CAB4599A"),
        ("FEDCBA9876543210", "0123456789ABCDEF", "ED39D950FA74BCC4"),
    ];

    #[test]
    fn sp_tables_have_disjoint_outputs() {
        // `feistel` combines the eight lookups with OR and addition as well as XOR, which is
        // only right if no two S-boxes' tables share a bit.
        let masks = SP.map(|table| table.iter().fold(0_u32, |mask, entry| mask | entry));
        for (index, mask) in masks.iter().enumerate() {
            assert_eq!(mask.count_ones(), 4, "S-box {index}");
            for other in &masks[index + 1..] {
                assert_eq!(mask & other, 0);
            }
        }
        assert_eq!(masks.iter().fold(0, |all, mask| all | mask), u32::MAX);
    }

    #[test]
    fn published_vectors() {
        for (key, plaintext, ciphertext) in VECTORS {
            let schedule = KeySchedule::new(&hex_block(key));
            assert_eq!(hex::encode_upper(schedule.encrypt_block(&hex_block(plaintext))), ciphertext, "key {key}");
            assert_eq!(hex::encode_upper(schedule.decrypt_block(&hex_block(ciphertext))), plaintext, "key {key}");
        }
    }

    #[test]
    fn ede_with_equal_keys_is_single_des() {
        let schedule = KeySchedule::new(&hex_block("0123456789ABCDEF"));
        let block = hex_block("4E6F772069732074");
        let encrypted = ede_encrypt([&schedule, &schedule, &schedule], &block);
        assert_eq!(encrypted, schedule.encrypt_block(&block));
        assert_eq!(ede_decrypt([&schedule, &schedule, &schedule], &encrypted), block);
    }

    #[test]
    fn schedule_is_zeroed_on_drop_path() {
        // Drop cannot be observed after the fact; check that the zeroizing it calls clears the words.
        let mut schedule = KeySchedule::new(&hex_block("0123456789ABCDEF"));
        assert!(schedule.words.iter().any(|word| *word != 0));
        schedule.words.zeroize();
        assert!(schedule.words.iter().all(|word| *word == 0));
    }
}
