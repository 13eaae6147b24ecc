//! Token-signing keys at rest: sealed with `secrets.encryption_key`, keys written in clear by
//! earlier versions still in use until the next rotation, and a wrong key refused with a
//! message that says so.

use crate::helpers::{TEST_ENCRYPTION_KEY, base_config};
use gatehouse_core::jwt::{Claims, private_key_storage};
use gatehouse_domain::model::SigningKey;
use gatehouse_domain::ports::{Clock, SystemClock};
use gatehouse_domain::{Secret, Timestamp};
use std::process::Command;
use std::sync::Arc;

fn claims(now: Timestamp) -> Claims {
    let t = now.unix_seconds();
    Claims {
        iss: "gatehouse".into(),
        aud: "gatehouse".into(),
        sub: gatehouse_domain::ids::new_id(),
        sid: gatehouse_domain::ids::new_id(),
        jti: "keys-test".into(),
        iat: t,
        nbf: t,
        exp: t + 60,
        typ: "access".into(),
        scope: "account".into(),
        ws: None,
        br: None,
        roles: Vec::new(),
    }
}

#[tokio::test]
async fn signing_keys_are_sealed_and_clear_legacy_keys_are_sealed_in_place() {
    let dir = std::env::temp_dir().join(format!("gh-keys-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite:{}", dir.join("gatehouse.db").display());
    let mut config = base_config();
    config.database.url = url.clone();
    config.secrets.encryption_key = Some(Secret::new(TEST_ENCRYPTION_KEY));
    let now = SystemClock.now();

    // A key as versions before sealing wrote it: the private half in clear.
    let store = gatehouse_store::connect(&url, &Default::default())
        .await
        .unwrap();
    let legacy = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    store
        .insert_first_signing_key(&SigningKey {
            kid: "legacy-clear".into(),
            alg: "EdDSA".into(),
            private_key: legacy.to_bytes().to_vec(),
            public_key: legacy.verifying_key().to_bytes().to_vec(),
            created_at: Timestamp::from_millis(now.millis() - 1000),
            retired_at: None,
        })
        .await
        .unwrap();

    // Start-up seals it in place, under the same kid: it still signs and verifies.
    let svc = gatehouse::server::service(&config, Arc::new(SystemClock))
        .await
        .unwrap();
    assert_eq!(svc.keys.signing_kid().as_deref(), Some("legacy-clear"));
    let rows = store.signing_keys().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(private_key_storage(&rows[0]), "sealed");
    assert_ne!(rows[0].private_key, legacy.to_bytes().to_vec());
    let old_token = svc.keys.sign(&claims(now)).unwrap();
    assert!(svc.keys.verify(&old_token, now).is_ok());

    // `gatehouse keys rotate` writes a sealed key and says which is which.
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["keys", "rotate"])
        .current_dir(std::env::temp_dir())
        .env("GATEHOUSE_DATABASE__URL", &url)
        .env("GATEHOUSE_SECRETS__ENCRYPTION_KEY", TEST_ENCRYPTION_KEY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("current") && l.ends_with("sealed")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("legacy-clear") && l.ends_with("sealed")),
        "{stdout}"
    );

    // The new row holds no clear private key; this instance picks it up from the first token
    // that names it, and the old key's tokens keep verifying.
    let rows = store.signing_keys().await.unwrap();
    let new = &rows[0];
    assert_ne!(new.kid, "legacy-clear");
    assert_eq!(private_key_storage(new), "sealed");
    assert_ne!(new.private_key.len(), 32);
    let peer = gatehouse::server::service(&config, Arc::new(SystemClock))
        .await
        .unwrap();
    assert_eq!(peer.keys.signing_kid().as_deref(), Some(new.kid.as_str()));
    let new_token = peer.keys.sign(&claims(now)).unwrap();
    assert!(
        svc.keys
            .verify_or_reload(svc.store.as_ref(), &new_token, now)
            .await
            .is_ok()
    );
    assert!(svc.keys.verify(&old_token, now).is_ok());

    // Another encryption key cannot open it: start-up fails and says why.
    let mut wrong = config.clone();
    wrong.secrets.encryption_key =
        Some(Secret::new("ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="));
    let err = gatehouse::server::service(&wrong, Arc::new(SystemClock))
        .await
        .err()
        .expect("a wrong encryption key is refused");
    let shown = format!("{err:#}");
    assert!(shown.contains("cannot start"), "{shown}");
    assert!(shown.contains("secrets.encryption_key"), "{shown}");
    assert!(shown.contains(&new.kid), "{shown}");
    let _ = std::fs::remove_dir_all(dir);
}
