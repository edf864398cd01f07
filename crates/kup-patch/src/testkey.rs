//! The fixed, public key that signs this crate's test bundles and the saved fuzz corpus
//! (`fuzz/corpus/bundle_reader/`). Its seed is published right here, so anyone can sign with
//! it: nothing but tests and the fuzz target may ever trust it.

use ed25519_dalek::{SigningKey, VerifyingKey};

/// sha256("kup-patch insecure test key").
pub const INSECURE_TEST_SEED: [u8; 32] = [
    0x8b, 0xac, 0x9d, 0x6b, 0x38, 0xbe, 0x57, 0xac, 0xb8, 0xf7, 0x3e, 0x13, 0x73, 0xd2, 0x02, 0x3f,
    0xb8, 0xd8, 0x5d, 0x60, 0x50, 0xba, 0x8a, 0x8a, 0x11, 0xb3, 0x4b, 0x91, 0xb4, 0xf1, 0xd3, 0x5c,
];

/// The signing half of the test key.
pub fn insecure_signing_key() -> SigningKey {
    SigningKey::from_bytes(&INSECURE_TEST_SEED)
}

/// The public half of the test key, as the fuzz target and the corpus test trust it.
pub fn insecure_verifying_key() -> VerifyingKey {
    insecure_signing_key().verifying_key()
}

/// Limits for fuzzing: small enough that a bomb is cut off quickly, large enough for every
/// bundle in the saved corpus.
pub const FUZZ_LIMITS: crate::Limits = crate::Limits {
    max_bundle_bytes: 4 * 1024 * 1024,
    max_files: 1000,
};

/// The body of the `bundle_reader` fuzz target, kept here so that an ordinary test can replay
/// the saved corpus on stable Rust. Panics only if [`crate::read`] breaks a promise: it must
/// return, refuse with a one-line reason, and accept only bundles whose payload matches.
pub fn fuzz_bundle_reader(data: &[u8]) {
    let trusted = [insecure_verifying_key()];
    match crate::read(data, &trusted, &FUZZ_LIMITS) {
        Err(e) => {
            let reason = e.to_string();
            assert!(reason.starts_with("bundle rejected: "), "{reason}");
            assert!(!reason.contains('\n'), "{reason:?}");
        }
        Ok(bundle) => {
            assert_eq!(bundle.key_id, crate::key_id(&trusted[0]));
            assert_eq!(bundle.files.len(), bundle.manifest.files.len());
            for f in &bundle.manifest.files {
                let data = &bundle.files[&f.path];
                assert_eq!(data.len() as u64, f.size);
                assert_eq!(crate::sha256_hex(data), f.sha256);
            }
        }
    }
}
