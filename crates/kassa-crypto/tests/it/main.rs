//! Property tests of kassa-crypto's public API: round trips hold for every input, and altered
//! inputs are always caught.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test binary: a failed unwrap is a failed test")]

mod des_reference;

use kassa_crypto::pin::{PAN_DIGITS_MAX, PAN_DIGITS_MIN};
use kassa_crypto::{
    encrypt_pin_block, translate_pin_block, unwrap_working_keys, verify_pin_block, x9_19_mac, ClearPinBlock,
    KeyPurpose, MacAlgorithm, MasterKey, Pin, PinBlockError, SealError, SealedSecret, SecurityModule,
    SoftwareSecurityModule, TdesKey, Verdict, WorkingKeyError, WorkingKeys,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn double_key() -> impl Strategy<Value = TdesKey> {
    any::<[u8; 16]>().prop_map(TdesKey::double)
}

fn pin_text() -> impl Strategy<Value = String> {
    "[0-9]{4,12}"
}

fn pan() -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[0-9]{{{PAN_DIGITS_MIN},{PAN_DIGITS_MAX}}}")).expect("valid regex")
}

proptest! {
    #[test]
    fn pin_block_build_parse_round_trip(pin in pin_text(), pan in pan(), key in double_key()) {
        let parsed = Pin::parse(&pin).unwrap();
        let clear = ClearPinBlock::encode(&parsed, &pan).unwrap();
        prop_assert_eq!(clear.decode(&pan).unwrap().len(), pin.len());
        let encrypted = encrypt_pin_block(&key, &parsed, &pan).unwrap();
        let decrypted = encrypted.decrypt(&key);
        prop_assert_eq!(decrypted.expose_secret(), clear.expose_secret());
        prop_assert_eq!(verify_pin_block(&key, &encrypted, &pan, &parsed).unwrap(), Verdict::Match);
    }

    #[test]
    fn a_different_pin_never_verifies(pin in pin_text(), other in pin_text(), pan in pan(),
                                      key in double_key()) {
        prop_assume!(pin != other);
        let encrypted = encrypt_pin_block(&key, &Pin::parse(&pin).unwrap(), &pan).unwrap();
        prop_assert_eq!(
            verify_pin_block(&key, &encrypted, &pan, &Pin::parse(&other).unwrap()).unwrap(),
            Verdict::Mismatch
        );
    }

    /// Any 8 bytes decrypt to something: either a valid block or a clear error, never a panic,
    /// and a translated block verifies under the new key exactly when the original would.
    #[test]
    fn arbitrary_blocks_give_errors_not_panics(bytes in any::<[u8; 8]>(), pan in pan(),
                                               from in double_key(), to in double_key()) {
        let block = kassa_crypto::EncryptedPinBlock::from_bytes(bytes);
        match translate_pin_block(&from, &to, &block, &pan) {
            Ok(translated) => {
                let pin = translated.decrypt(&to).decode(&pan).unwrap();
                prop_assert_eq!(
                    verify_pin_block(&from, &block, &pan, &pin).unwrap(),
                    Verdict::Match
                );
            }
            Err(error) => prop_assert!(matches!(
                error,
                PinBlockError::Format | PinBlockError::PinLength
                    | PinBlockError::NotDigits | PinBlockError::Padding
            )),
        }
    }

    #[test]
    fn working_keys_wrap_unwrap_round_trip(tmk in double_key(), seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let keys = WorkingKeys::generate(&mut rng);
        let wrapped = keys.wrap(&tmk);
        let unwrapped = unwrap_working_keys(&tmk, wrapped.as_bytes()).unwrap();
        prop_assert_eq!(unwrapped.pin_key().expose_secret(), keys.pin_key().expose_secret());
        prop_assert_eq!(unwrapped.mac_key().expose_secret(), keys.mac_key().expose_secret());
        prop_assert!(keys.pin_key().has_odd_parity() && keys.mac_key().has_odd_parity());
    }

    /// Flipping any bit of field 62 is caught by a check value (the KCV covers 32 bits of
    /// each key; a flip in the encrypted key changes the whole decrypted block).
    #[test]
    fn corrupted_field_62_is_rejected(tmk in double_key(), seed in any::<u64>(),
                                      bit in 0_usize..320) {
        let mut rng = StdRng::seed_from_u64(seed);
        let wrapped = WorkingKeys::generate(&mut rng).wrap(&tmk);
        let mut corrupted = *wrapped.as_bytes();
        corrupted[bit / 8] ^= 1 << (bit % 8);
        let error = unwrap_working_keys(&tmk, &corrupted).unwrap_err();
        prop_assert!(matches!(
            error,
            WorkingKeyError::PinKeyCheckValue | WorkingKeyError::MacKeyCheckValue
        ));
    }

    #[test]
    fn seal_open_round_trip(master in any::<[u8; 32]>(), plaintext in proptest::collection::vec(any::<u8>(), 0..512),
                            context in "[a-z0-9:]{1,64}", seed in any::<u64>()) {
        let master = MasterKey::from_bytes(master);
        let mut rng = StdRng::seed_from_u64(seed);
        let sealed = master.seal(&plaintext, &context, &mut rng).unwrap();
        let reparsed = SealedSecret::parse(&sealed.to_text()).unwrap();
        let opened = master.open(&reparsed, &context).unwrap();
        prop_assert_eq!(opened.expose_secret(), &plaintext[..]);
        let from_bytes = SealedSecret::from_bytes(sealed.as_bytes()).unwrap();
        let opened = master.open(&from_bytes, &context).unwrap();
        prop_assert_eq!(opened.expose_secret(), &plaintext[..]);
    }

    /// Any single-bit change after the version byte is rejected: in the key id as another
    /// master key, anywhere else as an authentication failure.
    #[test]
    fn tampered_sealed_values_are_rejected(master in any::<[u8; 32]>(),
                                           plaintext in proptest::collection::vec(any::<u8>(), 0..128),
                                           seed in any::<u64>(), position in any::<prop::sample::Index>(),
                                           bit in 0_u8..8) {
        let master = MasterKey::from_bytes(master);
        let mut rng = StdRng::seed_from_u64(seed);
        let sealed = master.seal(&plaintext, "tmk:10000001", &mut rng).unwrap();
        let mut bytes = sealed.as_bytes().to_vec();
        let index = 1 + position.index(bytes.len() - 1);
        bytes[index] ^= 1 << bit;
        let tampered = SealedSecret::from_bytes(&bytes).unwrap();
        let error = master.open(&tampered, "tmk:10000001").unwrap_err();
        if index < 5 {
            prop_assert_eq!(error, SealError::WrongMasterKey);
        } else {
            prop_assert_eq!(error, SealError::Authentication);
        }
    }

    #[test]
    fn module_mac_agrees_with_terminal_mac(seed in any::<u64>(),
                                           message in proptest::collection::vec(any::<u8>(), 0..300)) {
        let module = SoftwareSecurityModule::new(StdRng::seed_from_u64(seed), 16);
        let tmk = TdesKey::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let tmk_handle = module.import_key(KeyPurpose::TerminalMaster, tmk.clone()).unwrap();
        let issued = module.issue_working_keys(tmk_handle).unwrap();
        let terminal = issued.field_62.unwrap(&tmk).unwrap();
        let mac = x9_19_mac(terminal.mac_key(), &message).unwrap();
        prop_assert_eq!(
            module.verify_mac(issued.mac_key, MacAlgorithm::X919Retail, &message, mac.as_bytes()).unwrap(),
            Verdict::Match
        );
        let mut forged = *mac.as_bytes();
        forged[(seed % 8) as usize] ^= 1 << (seed % 7);
        prop_assert_eq!(
            module.verify_mac(issued.mac_key, MacAlgorithm::X919Retail, &message, &forged).unwrap(),
            Verdict::Mismatch
        );
    }
}
