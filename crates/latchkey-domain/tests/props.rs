//! Property tests (proptest; `fuzz/` has the coverage-guided side):
//! whatever a client sends as a filename or a token subject, the key the
//! broker renders stays inside its user's prefix and no two users share a
//! segment.

use latchkey_domain::{KeyTemplate, UploadId, UserId, sanitize_filename};
use proptest::prelude::*;

/// `cases` cases, or `PROPTEST_CASES` when set; failing inputs are kept
/// in (and replayed first from) the file named here.
fn config(cases: u32) -> ProptestConfig {
    latchkey_testkit::proptest_config(cases, "tests/proptest-regressions/props.txt")
}

/// Strings with the characters that matter: separators, dots, controls,
/// bidi overrides, multi-byte text.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[./\\\\%a-z\u{0}\u{202e}\u{200f}é漢 ]{0,40}",
        "(\\.\\./|%2e%2e%2f|\\.\\.\\\\){1,5}[a-z.]{0,10}",
        ".{250,300}",
    ]
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn sanitized_filenames_are_one_harmless_component(raw in hostile()) {
        let s = sanitize_filename(&raw);
        prop_assert!(!s.is_empty() && s.len() <= 255, "{s:?}");
        prop_assert!(!s.contains('/') && !s.contains('\\'), "{s:?}");
        prop_assert!(s != "." && s != "..", "{s:?}");
        prop_assert!(!s.chars().any(char::is_control), "{s:?}");
        prop_assert!(
            !s.chars().any(|c| matches!(c as u32, 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069)),
            "{s:?}"
        );
        prop_assert_eq!(sanitize_filename(&s), s.clone(), "idempotent");
    }

    #[test]
    fn key_segments_are_safe_and_injective(a in hostile(), b in hostile()) {
        let (Ok(ua), Ok(ub)) = (UserId::parse(&a), UserId::parse(&b)) else {
            return Ok(());
        };
        for seg in [ua.key_segment(), ub.key_segment()] {
            prop_assert!(!seg.is_empty());
            prop_assert!(
                seg.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
                "{seg:?}"
            );
        }
        prop_assert_eq!(a == b, ua.key_segment() == ub.key_segment());
    }

    #[test]
    fn rendered_keys_stay_under_the_users_prefix(user in hostile(), template in prop_oneof![
        Just("u/{user}/{profile}/{id}{ext}".to_owned()),
        Just("{user}/{id}".to_owned()),
        Just("a/{profile}/{user}/x/{id}.bin{ext}".to_owned()),
    ]) {
        let Ok(user) = UserId::parse(&user) else { return Ok(()); };
        let t = KeyTemplate::parse(&template).unwrap();
        let key = t.render(&user, "photo", &UploadId::new(), ".jpg");
        let key = key.as_str();
        prop_assert!(!key.contains(".."), "{key}");
        prop_assert!(!key.starts_with('/') && !key.contains("//"), "{key}");
        prop_assert!(key.starts_with(&t.user_prefix(&user, "photo")), "{key}");
        prop_assert_eq!(
            key.matches('/').count(),
            template.matches('/').count(),
            "a user id adds no path component"
        );
    }

    #[test]
    fn template_parse_never_panics(s in any::<String>()) {
        if let Ok(t) = KeyTemplate::parse(&s) {
            let user = UserId::parse("a/../b").unwrap();
            let key = t.render(&user, "p", &UploadId::new(), ".x");
            prop_assert!(!key.as_str().contains(".."));
        }
    }
}
