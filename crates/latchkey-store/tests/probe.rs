//! `latchkey store check` against real stores: the embedded store always,
//! Garage when `scripts/test` (or you) set `LATCHKEY_TEST_S3_*`.

mod support;

use latchkey_store::{
    Capabilities, ProbeReport, ProbeResult, ProbeTarget, S3Store, S3StoreConfig, probe,
};

const BUCKET: &str = "probe-bucket";
const AK: &str = "AKIDPROBETEST";
const SK: &str = "probe/secret+for+the/local+store";

/// The probe prefix must be empty afterwards, and no multipart upload left.
async fn assert_clean(target: &ProbeTarget, report: &ProbeReport) {
    assert!(report.prefix.starts_with(".latchkey-probe/"));
    assert!(
        report.row("cleanup").is_none(),
        "cleanup failed: {:?}",
        report.row("cleanup")
    );
    let store = S3Store::new(&S3StoreConfig {
        endpoint: target.endpoint.clone(),
        region: target.region.clone(),
        bucket: target.bucket.clone(),
        path_style: target.path_style,
        access_key_id: target.access_key_id.clone(),
        secret_access_key: target.secret_access_key.clone(),
        capabilities: Capabilities::FULL,
    });
    let listed = store
        .client()
        .list_objects_v2()
        .bucket(&target.bucket)
        .prefix(&report.prefix)
        .send()
        .await
        .unwrap();
    let left: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(left.is_empty(), "objects left behind: {left:?}");
    let uploads = store
        .client()
        .list_multipart_uploads()
        .bucket(&target.bucket)
        .prefix(&report.prefix)
        .send()
        .await
        .unwrap();
    assert!(
        uploads.uploads().is_empty(),
        "multipart uploads left behind"
    );
}

fn result(report: &ProbeReport, name: &str) -> ProbeResult {
    report
        .row(name)
        .unwrap_or_else(|| panic!("no {name} row"))
        .result
        .clone()
}

#[tokio::test]
async fn embedded_store_supports_every_upload_mode() {
    let (_dir, handle) = support::embedded_store(BUCKET, AK, SK).await;
    let target = ProbeTarget {
        endpoint: handle.endpoint_url(),
        region: "us-east-1".into(),
        bucket: BUCKET.into(),
        path_style: true,
        access_key_id: AK.into(),
        secret_access_key: SK.to_string().into(),
        sts_endpoint: None,
        sts_role_arn: None,
    };
    let report = probe(&target).await.unwrap();
    println!("{report}");

    let caps = &report.capabilities;
    assert!(caps.if_none_match, "{report}");
    assert!(caps.checksum_sha256, "{report}");
    assert!(caps.post_object, "{report}");
    assert!(caps.multipart, "{report}");
    assert!(caps.clock_skew_enforced, "{report}");
    for name in ["put_signed_headers", "presigned_expiry"] {
        assert_eq!(result(&report, name), ProbeResult::Supported, "{report}");
    }
    // The broker keeps FULL for the embedded store: it will mint credentials
    // itself, and it answers CORS and reports object events in-process, none
    // of which goes through the S3 configuration APIs probed here.
    assert_eq!(
        result(&report, "temporary_credentials"),
        ProbeResult::Skipped
    );
    for name in ["cors_config", "lifecycle", "event_notifications"] {
        assert_eq!(result(&report, name), ProbeResult::Unsupported, "{report}");
        assert!(report.row(name).unwrap().detail.contains("501"), "{report}");
    }
    assert_clean(&target, &report).await;

    let json = report.to_json();
    assert_eq!(json["capabilities"]["if_none_match"], true);
    assert_eq!(json["rows"].as_array().unwrap().len(), report.rows.len());
    handle.shutdown().await;
}

#[tokio::test]
async fn unreachable_store_is_an_error() {
    // Bind and drop, so nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = ProbeTarget {
        endpoint: format!("http://127.0.0.1:{port}"),
        region: "us-east-1".into(),
        bucket: BUCKET.into(),
        path_style: true,
        access_key_id: AK.into(),
        secret_access_key: SK.to_string().into(),
        sts_endpoint: None,
        sts_role_arn: None,
    };
    let err = probe(&target).await.unwrap_err();
    assert!(!err.to_string().contains(SK));
}

fn garage_target() -> Option<ProbeTarget> {
    let var = |name: &str| std::env::var(format!("LATCHKEY_TEST_S3_{name}")).ok();
    Some(ProbeTarget {
        endpoint: var("ENDPOINT")?,
        region: var("REGION")?,
        bucket: var("BUCKET")?,
        path_style: true,
        access_key_id: var("ACCESS_KEY")?,
        secret_access_key: var("SECRET_KEY")?.into(),
        sts_endpoint: None,
        sts_role_arn: None,
    })
}

/// Expected per DESIGN §9 (Garage 2.5.0).
#[tokio::test]
async fn garage_matches_the_measured_table() {
    let Some(target) = garage_target() else {
        println!("not run: set LATCHKEY_TEST_S3_{{ENDPOINT,REGION,BUCKET,ACCESS_KEY,SECRET_KEY}}");
        return;
    };
    let report = probe(&target).await.unwrap();
    println!("{report}");
    let caps = &report.capabilities;
    assert!(!caps.if_none_match, "{report}");
    assert!(caps.checksum_sha256, "{report}");
    assert!(caps.post_object, "{report}");
    assert!(caps.multipart, "{report}");
    assert!(caps.cors_config, "{report}");
    assert!(caps.lifecycle, "{report}");
    assert!(!caps.event_notifications, "{report}");
    assert!(!caps.clock_skew_enforced, "{report}");
    assert!(!caps.temporary_credentials, "{report}");
    assert_eq!(
        result(&report, "put_signed_headers"),
        ProbeResult::Supported,
        "{report}"
    );
    assert_eq!(
        result(&report, "presigned_expiry"),
        ProbeResult::Supported,
        "{report}"
    );
    assert_clean(&target, &report).await;
}

/// A configured role on a store without STS: an answer, not a crash, and
/// still nothing left behind.
#[tokio::test]
async fn garage_without_sts_says_so() {
    let Some(mut target) = garage_target() else {
        println!("not run: set LATCHKEY_TEST_S3_{{ENDPOINT,REGION,BUCKET,ACCESS_KEY,SECRET_KEY}}");
        return;
    };
    target.sts_role_arn = Some("arn:aws:iam::000000000000:role/latchkey".into());
    let report = probe(&target).await.unwrap();
    let sts = report.row("temporary_credentials").unwrap();
    println!("{}: {:?} {}", sts.name, sts.result, sts.detail);
    // Garage refuses a signature scoped to the `sts` service outright.
    assert_eq!(sts.result, ProbeResult::Unsupported, "{report}");
    assert!(sts.detail.contains("AssumeRole 400"), "{report}");
    assert!(!report.capabilities.temporary_credentials);
    assert_clean(&target, &report).await;
}
