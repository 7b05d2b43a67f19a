//! Bearer tokens are the first untrusted bytes of every API call. With an
//! HS256 secret configured, a token is accepted only when it is exactly
//! the one token signed with that secret: arbitrary text, and any edit of
//! the valid token (the fuzzer picks edits when the input starts with 0),
//! is 401, never a panic.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use latchkey_api::{ApiError, AuthConfig, Authenticator, mint_token};
use latchkey_domain::Secret;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret!";

fn fixture() -> &'static (Authenticator, String) {
    static F: OnceLock<(Authenticator, String)> = OnceLock::new();
    F.get_or_init(|| {
        let auth = Authenticator::new(&AuthConfig {
            hs256_secret: Some(Secret::new(SECRET)),
            ..AuthConfig::default()
        })
        .unwrap();
        let ttl = Duration::from_secs(3600);
        let token = mint_token(&Secret::new(SECRET), "alice", ttl, None, None).unwrap();
        (auth, token)
    })
}

fuzz_target!(|input: (bool, Vec<(u16, u8)>, &str)| {
    let (auth, valid) = fixture();
    let (edit, edits, text) = input;
    let token = if edit {
        let mut bytes = valid.clone().into_bytes();
        for (at, b) in edits {
            let i = usize::from(at) % bytes.len();
            bytes[i] = b;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        text.to_owned()
    };
    match auth.verify(&token) {
        Ok(user) => {
            assert_eq!(&token, valid, "an edited or foreign token was accepted");
            assert_eq!(user.as_str(), "alice");
        }
        Err(ApiError::Unauthorized(_)) => assert_ne!(&token, valid),
        Err(other) => panic!("not a 401: {other:?}"),
    }
});
