//! Filenames and user ids are whatever a client sends: the sanitized name
//! is one harmless path component, idempotent; a user's key segment is
//! made of safe characters and tells users apart; a rendered key stays
//! under its user's prefix whatever the template and the user id.
#![no_main]

use latchkey_domain::{KeyTemplate, UploadId, UserId, sanitize_filename};
use libfuzzer_sys::fuzz_target;

const TEMPLATES: [&str; 3] = [
    "u/{user}/{profile}/{id}{ext}",
    "{user}/{id}",
    "a/{profile}/{user}/x/{id}.bin{ext}",
];

fuzz_target!(|input: (String, String, String, u8)| {
    let (a, b, template, pick) = input;

    let s = sanitize_filename(&a);
    assert!(!s.is_empty() && s.len() <= 255, "{s:?}");
    assert!(!s.contains('/') && !s.contains('\\'), "{s:?}");
    assert!(s != "." && s != "..", "{s:?}");
    assert!(!s.chars().any(char::is_control), "{s:?}");
    assert!(
        !s.chars()
            .any(|c| matches!(c as u32, 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069)),
        "{s:?}"
    );
    assert_eq!(sanitize_filename(&s), s, "idempotent");

    if let (Ok(ua), Ok(ub)) = (UserId::parse(&a), UserId::parse(&b)) {
        for seg in [ua.key_segment(), ub.key_segment()] {
            assert!(!seg.is_empty());
            assert!(
                seg.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
                "{seg:?}"
            );
        }
        assert_eq!(a == b, ua.key_segment() == ub.key_segment());

        let fixed = TEMPLATES[usize::from(pick) % TEMPLATES.len()];
        let t = KeyTemplate::parse(fixed).unwrap();
        let key = t.render(&ua, "photo", &UploadId::new(), ".jpg");
        let key = key.as_str();
        assert!(
            !key.contains("..") && !key.starts_with('/') && !key.contains("//"),
            "{key}"
        );
        assert!(key.starts_with(&t.user_prefix(&ua, "photo")), "{key}");
        assert_eq!(key.matches('/').count(), fixed.matches('/').count());

        // Any template the parser accepts keeps the key free of `..`.
        if let Ok(t) = KeyTemplate::parse(&template) {
            let key = t.render(&ua, "p", &UploadId::new(), ".x");
            assert!(
                !key.as_str().contains(".."),
                "{template:?} → {}",
                key.as_str()
            );
        }
    }
});
