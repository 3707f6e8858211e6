//! Kassa's DES against the RustCrypto `des` crate, an independent implementation (bit-sliced
//! permutations and per-S-box lookups rather than combined SP tables): every key length,
//! both directions, random keys and blocks, and the retail MAC recomputed block by block.

use des::cipher::consts::U8;
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockDecrypt, BlockEncrypt, BlockSizeUser, KeyInit};
use des::{Des, TdesEde2, TdesEde3};
use kassa_crypto::{x9_19_mac, x9_9_mac, DesKey, TdesKey};
use proptest::prelude::*;

fn reference_encrypt<C: BlockEncrypt + BlockSizeUser<BlockSize = U8>>(cipher: &C, block: [u8; 8]) -> [u8; 8] {
    let mut buffer = GenericArray::from(block);
    cipher.encrypt_block(&mut buffer);
    buffer.into()
}

fn reference_decrypt<C: BlockDecrypt + BlockSizeUser<BlockSize = U8>>(cipher: &C, block: [u8; 8]) -> [u8; 8] {
    let mut buffer = GenericArray::from(block);
    cipher.decrypt_block(&mut buffer);
    buffer.into()
}

/// X9.19 from the reference's single-DES primitives, the textbook way: CBC with K1, then
/// decrypt with K2 and encrypt with K1, each block through both permutations.
fn reference_retail_mac(key: &[u8; 16], message: &[u8]) -> [u8; 8] {
    let left = Des::new(GenericArray::from_slice(&key[..8]));
    let right = Des::new(GenericArray::from_slice(&key[8..]));
    let mut padded = message.to_vec();
    padded.resize(message.len().div_ceil(8).max(1) * 8, 0);
    let mut chain = [0_u8; 8];
    for block in padded.chunks_exact(8) {
        for (chain_byte, message_byte) in chain.iter_mut().zip(block) {
            *chain_byte ^= message_byte;
        }
        chain = reference_encrypt(&left, chain);
    }
    reference_encrypt(&left, reference_decrypt(&right, chain))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn single_des_matches_reference(key in any::<[u8; 8]>(), block in any::<[u8; 8]>()) {
        let ours = DesKey::from_bytes(key);
        let reference = Des::new(GenericArray::from_slice(&key));
        prop_assert_eq!(ours.encrypt_block(&block), reference_encrypt(&reference, block));
        prop_assert_eq!(ours.decrypt_block(&block), reference_decrypt(&reference, block));
    }

    #[test]
    fn two_key_ede_matches_reference(key in any::<[u8; 16]>(), block in any::<[u8; 8]>()) {
        let ours = TdesKey::double(key);
        let reference = TdesEde2::new(GenericArray::from_slice(&key));
        prop_assert_eq!(ours.encrypt_block(&block), reference_encrypt(&reference, block));
        prop_assert_eq!(ours.decrypt_block(&block), reference_decrypt(&reference, block));
    }

    #[test]
    fn three_key_ede_matches_reference(key in any::<[u8; 24]>(), block in any::<[u8; 8]>()) {
        let ours = TdesKey::triple(key);
        let reference = TdesEde3::new(GenericArray::from_slice(&key));
        prop_assert_eq!(ours.encrypt_block(&block), reference_encrypt(&reference, block));
        prop_assert_eq!(ours.decrypt_block(&block), reference_decrypt(&reference, block));
    }

    #[test]
    fn macs_match_reference(key in any::<[u8; 16]>(), message in proptest::collection::vec(any::<u8>(), 0..200)) {
        let ours = x9_19_mac(&TdesKey::double(key), &message).unwrap();
        prop_assert_eq!(*ours.as_bytes(), reference_retail_mac(&key, &message));
        // X9.9 is the retail MAC with equal halves.
        let mut left_twice = [0_u8; 16];
        left_twice[..8].copy_from_slice(&key[..8]);
        left_twice[8..].copy_from_slice(&key[..8]);
        let mut left = [0_u8; 8];
        left.copy_from_slice(&key[..8]);
        prop_assert_eq!(*x9_9_mac(&DesKey::from_bytes(left), &message).as_bytes(), reference_retail_mac(&left_twice, &message));
    }
}
