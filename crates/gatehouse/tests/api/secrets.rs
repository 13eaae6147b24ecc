//! A full flow through the real binary, then every log line and every database row is
//! searched for the password and the tokens: none may appear.

use crate::helpers::{Reply, browser};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_or_database() {
    let dir = std::env::temp_dir().join(format!("gh-secrets-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("gatehouse.db");
    let admin_password = "Bootstrap-secret-pass-17";
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("serve")
        .current_dir(&dir)
        .env("GATEHOUSE_BIND", "127.0.0.1:0")
        .env(
            "GATEHOUSE_DATABASE__URL",
            format!("sqlite:{}", db.display()),
        )
        .env("GATEHOUSE_BOOTSTRAP_ADMIN_EMAIL", "boss@example.com")
        .env("GATEHOUSE_BOOTSTRAP_ADMIN_PASSWORD", admin_password)
        .env("GATEHOUSE_PASSWORD__ARGON2_MEMORY_KIB", "256")
        .env("GATEHOUSE_PASSWORD__ARGON2_ITERATIONS", "1")
        .env("GATEHOUSE_PASSWORD__INSECURE_FAST_HASHING", "true")
        .env("GATEHOUSE_LOG__LEVEL", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(String::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    let sink = logs.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("gatehouse listening")
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            {
                let _ = addr_tx.send(v["addr"].as_str().unwrap_or_default().to_string());
            }
            sink.lock().unwrap().push_str(&line);
            sink.lock().unwrap().push('\n');
        }
    });
    let err = child.stderr.take().unwrap();
    let err_sink = logs.clone();
    let err_reader = std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            err_sink.lock().unwrap().push_str(&line);
        }
    });
    let addr = addr_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("server announced its address");
    let base = format!("http://{addr}");
    let client = browser();

    let csrf: serde_json::Value = client
        .get(format!("{base}/api/v1/auth/csrf-token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let csrf = csrf["data"]["csrfToken"].as_str().unwrap().to_string();
    let login = |pw: &'static str| {
        client
            .post(format!("{base}/api/v1/auth/login"))
            .header("X-CSRFToken", &csrf)
            .json(&json!({ "identifier": "boss@example.com", "password": pw }))
            .send()
    };
    Reply::of(login("Wrong-guess-pass-1").await.unwrap())
        .await
        .expect(401, "INVALID_CREDENTIALS");
    let r = Reply::of(login("Bootstrap-secret-pass-17").await.unwrap()).await;
    let auth = r.expect(200, "AUTH_LOGIN_SUCCESS")["auth"].clone();
    let access = auth["accessToken"].as_str().unwrap().to_string();
    let refresh = auth["refreshToken"].as_str().unwrap().to_string();
    let r = client
        .post(format!("{base}/api/v1/auth/refresh"))
        .json(&json!({ "refreshToken": refresh }))
        .send()
        .await
        .unwrap();
    let auth2 = Reply::of(r).await.expect(200, "AUTH_REFRESH_SUCCESS")["auth"].clone();
    let access2 = auth2["accessToken"].as_str().unwrap().to_string();
    let refresh2 = auth2["refreshToken"].as_str().unwrap().to_string();
    let me = client
        .get(format!("{base}/api/v1/auth/me"))
        .bearer_auth(&access2)
        .send()
        .await
        .unwrap();
    Reply::of(me).await.expect(200, "OK");
    let new_password = "Another-secret-pass-29";
    let r = client
        .post(format!("{base}/api/v1/auth/password"))
        .bearer_auth(&access2)
        .json(&json!({ "currentPassword": admin_password, "newPassword": new_password }))
        .send()
        .await
        .unwrap();
    Reply::of(r).await.expect(200, "OK");
    let r = client
        .post(format!("{base}/api/v1/auth/logout"))
        .bearer_auth(&access2)
        .send()
        .await
        .unwrap();
    Reply::of(r).await.expect(200, "AUTH_LOGOUT_SUCCESS");

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    reader.join().unwrap();
    err_reader.join().unwrap();
    let secrets = [
        admin_password,
        new_password,
        "Wrong-guess-pass-1",
        &access,
        &refresh,
        &access2,
        &refresh2,
        &csrf,
    ];
    let logs = logs.lock().unwrap().clone();
    assert!(
        logs.contains("\"route\":\"/api/v1/auth/login\""),
        "request lines are logged"
    );
    for s in &secrets {
        assert!(!logs.contains(s), "a secret reached the logs");
    }

    use sqlx::{Connection, Row};
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
        .await
        .unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert!(tables.len() >= 8);
    let mut cells = 0;
    for t in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM \"{t}\"")))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        for row in rows {
            for i in 0..row.columns().len() {
                let text = row
                    .try_get::<String, _>(i)
                    .ok()
                    .or_else(|| {
                        row.try_get::<Vec<u8>, _>(i)
                            .ok()
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                    })
                    .unwrap_or_default();
                cells += 1;
                for s in &secrets {
                    assert!(!text.contains(s), "a secret is stored in table {t}");
                }
            }
        }
    }
    assert!(cells > 50, "scanned {cells} cells");
    let _ = std::fs::remove_dir_all(dir);
}
