//! Property tests (proptest; `fuzz/` has the coverage-guided side): S3
//! event bodies and bearer tokens are untrusted bytes. Any input is
//! answered Ok or Err, never a panic; a token is accepted only when it is a
//! valid one.

use std::time::Duration;

use latchkey_api::error::ApiError;
use latchkey_api::{AuthConfig, Authenticator, mint_token, s3_events};
use latchkey_domain::Secret;
use proptest::prelude::*;

const SECRET: &str = "props-secret-props-secret-props-secret";

fn authenticator() -> Authenticator {
    Authenticator::new(&AuthConfig {
        hs256_secret: Some(Secret::new(SECRET)),
        ..AuthConfig::default()
    })
    .unwrap()
}

fn valid_token() -> String {
    mint_token(
        &Secret::new(SECRET),
        "alice",
        Duration::from_secs(3600),
        None,
        None,
    )
    .unwrap()
}

/// JSON-ish event bodies: fragments of real S3 and SNS notifications
/// glued at random, so the parser gets past the first brace.
fn event_body() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{\"Records\":[".to_owned()),
        Just("{\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"b\"},\"object\":{\"key\":\"".to_owned()),
        Just("\"}}}".to_owned()),
        Just("]}".to_owned()),
        Just("{\"Type\":\"Notification\",\"Message\":\"".to_owned()),
        Just("{\"Type\":\"SubscriptionConfirmation\",\"SubscribeURL\":\"".to_owned()),
        Just("%".to_owned()),
        Just("%C3%A9+%2".to_owned()),
        Just(",".to_owned()),
        Just("\\\"".to_owned()),
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

/// `cases` cases, or `PROPTEST_CASES` when set; failing inputs are kept
/// in (and replayed first from) the file named here.
fn config(cases: u32) -> ProptestConfig {
    latchkey_testkit::proptest_config(cases, "tests/proptest-regressions/props.txt")
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn s3_event_parsing_never_panics(
        body in prop_oneof![any::<String>(), event_body()],
        sns in proptest::option::of(prop_oneof![
            Just("Notification".to_owned()),
            Just("SubscriptionConfirmation".to_owned()),
            any::<String>(),
        ]),
    ) {
        let _ = s3_events::parse(&body, sns.as_deref());
    }

    #[test]
    fn random_tokens_are_unauthorized(token in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_\\-]{0,40}\\.[A-Za-z0-9_\\-]{0,60}\\.[A-Za-z0-9_\\-]{0,50}",
        // `{"alg":"none"}`, `{"alg":"HS256"}` and `{"alg":"RS256"}` headers.
        "(eyJhbGciOiJub25lIn0|eyJhbGciOiJIUzI1NiJ9|eyJhbGciOiJSUzI1NiJ9)\\.[A-Za-z0-9_\\-]{0,60}\\.[A-Za-z0-9_\\-]{0,50}",
    ]) {
        let auth = authenticator();
        prop_assert!(matches!(auth.verify(&token), Err(ApiError::Unauthorized(_))));
    }

    #[test]
    fn a_mutated_valid_token_is_unauthorized(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<char>()), 1..4),
    ) {
        let auth = authenticator();
        let good = valid_token();
        let user = auth.verify(&good).unwrap();
        prop_assert_eq!(user.as_str(), "alice");
        let mut chars: Vec<char> = good.chars().collect();
        for (at, c) in edits {
            let i = at.index(chars.len());
            chars[i] = c;
        }
        let bad: String = chars.into_iter().collect();
        if bad != good {
            prop_assert!(matches!(auth.verify(&bad), Err(ApiError::Unauthorized(_))), "{bad}");
        }
    }
}
