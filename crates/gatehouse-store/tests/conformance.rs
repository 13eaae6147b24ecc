#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Store conformance: each behaviour of the store ports is written once (`case_*`) and run
//! against every adapter: SQLite always, PostgreSQL when `GATEHOUSE_TEST_DATABASE_URL` is
//! set (mandatory under `CI=true`). Every test gets its own database and removes it after.

mod common;

use gatehouse_domain::ids::new_id;
use gatehouse_domain::model::{
    Account, AccountKind, AccountStatus, ApiKey, AuditEvent, AuditFilter, Branch, Invitation,
    InvitationStatus, LoginCommit, Member, NewMember, NewToken, Page, PersonalAccessToken,
    RefreshPolicy, Role, Rotation, Session, SessionStatus, SigningKey, Status, TokenKind,
    TrustedDevice, Workspace,
};
use gatehouse_domain::ports::{NewAccount, Store, StoreError, StoreResult};
use gatehouse_domain::sso::{ExternalIdentity, StoredProvider, Unlink};
use gatehouse_domain::{Id, Timestamp};
use gatehouse_store::PoolOptions;
use serde_json::json;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Harness: one fresh database per test (see `common`), opened as a store.
// ---------------------------------------------------------------------------------------

/// Runs `case` against a store on a fresh SQLite file.
async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    common::with_sqlite_url(|url| async move {
        let store = gatehouse_store::connect(&url, &PoolOptions::default())
            .await
            .expect("open the SQLite store");
        assert_eq!(store.backend(), "sqlite");
        case(store).await;
    })
    .await;
}

/// Runs `case` against a store on a fresh PostgreSQL database.
async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    common::with_postgres_url(|url| async move {
        let store = gatehouse_store::connect(&url, &PoolOptions::default())
            .await
            .expect("open the PostgreSQL store");
        assert_eq!(store.backend(), "postgres");
        case(store).await;
    })
    .await;
}

/// Generates `#[tokio::test]`s running each case on each backend.
macro_rules! conformance {
    ($($case:ident => $sqlite:ident, $postgres:ident;)+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            on_sqlite($case).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            on_postgres($case).await;
        }
    )+};
}

conformance! {
    case_sso_identity_links_resolves_and_is_unique =>
        sso_identity_links_resolves_and_is_unique_sqlite,
        sso_identity_links_resolves_and_is_unique_postgres;
    case_sso_register_with_identity_is_all_or_nothing =>
        sso_register_with_identity_is_all_or_nothing_sqlite,
        sso_register_with_identity_is_all_or_nothing_postgres;
    case_sso_unlink_refuses_the_last_way_to_sign_in =>
        sso_unlink_refuses_the_last_way_to_sign_in_sqlite,
        sso_unlink_refuses_the_last_way_to_sign_in_postgres;
    case_sso_email_verified_is_what_the_account_was_created_with =>
        sso_email_verified_is_what_the_account_was_created_with_sqlite,
        sso_email_verified_is_what_the_account_was_created_with_postgres;
    case_sso_stored_providers_round_trip =>
        sso_stored_providers_round_trip_sqlite,
        sso_stored_providers_round_trip_postgres;
    case_role_codes_are_unique_per_scope_including_global =>
        role_codes_are_unique_per_scope_including_global_sqlite,
        role_codes_are_unique_per_scope_including_global_postgres;
    case_members_carry_branches_and_roles =>
        members_carry_branches_and_roles_sqlite,
        members_carry_branches_and_roles_postgres;
    case_session_context_moves_the_session_and_rotates_refresh =>
        session_context_moves_the_session_and_rotates_refresh_sqlite,
        session_context_moves_the_session_and_rotates_refresh_postgres;
    case_totp_goes_pending_then_active_and_steps_only_move_forward =>
        totp_goes_pending_then_active_and_steps_only_move_forward_sqlite,
        totp_goes_pending_then_active_and_steps_only_move_forward_postgres;
    case_racing_uses_of_a_totp_step_or_recovery_code_have_one_winner =>
        racing_uses_of_a_totp_step_or_recovery_code_have_one_winner_sqlite,
        racing_uses_of_a_totp_step_or_recovery_code_have_one_winner_postgres;
    case_trusted_devices_match_their_account_and_go_with_password_or_mfa =>
        trusted_devices_match_their_account_and_go_with_password_or_mfa_sqlite,
        trusted_devices_match_their_account_and_go_with_password_or_mfa_postgres;
    case_create_account_round_trips_by_id_email_and_username =>
        create_account_round_trips_by_id_email_and_username_sqlite,
        create_account_round_trips_by_id_email_and_username_postgres;
    case_create_account_with_taken_email_is_conflict =>
        create_account_with_taken_email_is_conflict_sqlite,
        create_account_with_taken_email_is_conflict_postgres;
    case_create_account_with_taken_username_is_conflict =>
        create_account_with_taken_username_is_conflict_sqlite,
        create_account_with_taken_username_is_conflict_postgres;
    case_list_accounts_pages_with_totals =>
        list_accounts_pages_with_totals_sqlite,
        list_accounts_pages_with_totals_postgres;
    case_list_accounts_filters_by_email_username_or_display_name =>
        list_accounts_filters_by_email_username_or_display_name_sqlite,
        list_accounts_filters_by_email_username_or_display_name_postgres;
    case_list_accounts_query_treats_wildcards_literally =>
        list_accounts_query_treats_wildcards_literally_sqlite,
        list_accounts_query_treats_wildcards_literally_postgres;
    case_disabling_an_account_revokes_its_active_sessions =>
        disabling_an_account_revokes_its_active_sessions_sqlite,
        disabling_an_account_revokes_its_active_sessions_postgres;
    case_the_last_active_admin_cannot_be_disabled =>
        the_last_active_admin_cannot_be_disabled_sqlite,
        the_last_active_admin_cannot_be_disabled_postgres;
    case_two_admins_disabling_each_other_leave_one =>
        two_admins_disabling_each_other_leave_one_sqlite,
        two_admins_disabling_each_other_leave_one_postgres;
    case_revoked_since_lists_recent_revocations_oldest_first =>
        revoked_since_lists_recent_revocations_oldest_first_sqlite,
        revoked_since_lists_recent_revocations_oldest_first_postgres;
    case_enabling_an_account_revokes_nothing =>
        enabling_an_account_revokes_nothing_sqlite,
        enabling_an_account_revokes_nothing_postgres;
    case_set_must_change_password_toggles_the_flag =>
        set_must_change_password_toggles_the_flag_sqlite,
        set_must_change_password_toggles_the_flag_postgres;
    case_change_password_replaces_hash_and_keeps_one_session =>
        change_password_replaces_hash_and_keeps_one_session_sqlite,
        change_password_replaces_hash_and_keeps_one_session_postgres;
    case_change_password_without_keep_revokes_every_session =>
        change_password_without_keep_revokes_every_session_sqlite,
        change_password_without_keep_revokes_every_session_postgres;
    case_change_password_sets_a_first_password =>
        change_password_sets_a_first_password_sqlite,
        change_password_sets_a_first_password_postgres;
    case_commit_login_writes_session_token_last_login_and_audit =>
        commit_login_writes_session_token_last_login_and_audit_sqlite,
        commit_login_writes_session_token_last_login_and_audit_postgres;
    case_commit_login_with_revoke_others_revokes_older_sessions =>
        commit_login_with_revoke_others_revokes_older_sessions_sqlite,
        commit_login_with_revoke_others_revokes_older_sessions_postgres;
    case_commit_login_with_rehash_replaces_the_password_hash =>
        commit_login_with_rehash_replaces_the_password_hash_sqlite,
        commit_login_with_rehash_replaces_the_password_hash_postgres;
    case_rotate_refresh_spends_old_token_and_stores_new =>
        rotate_refresh_spends_old_token_and_stores_new_sqlite,
        rotate_refresh_spends_old_token_and_stores_new_postgres;
    case_rotate_refresh_with_spent_token_is_reuse_and_revokes_session =>
        rotate_refresh_with_spent_token_is_reuse_and_revokes_session_sqlite,
        rotate_refresh_with_spent_token_is_reuse_and_revokes_session_postgres;
    case_rotate_refresh_with_unknown_or_web_token_is_unknown =>
        rotate_refresh_with_unknown_or_web_token_is_unknown_sqlite,
        rotate_refresh_with_unknown_or_web_token_is_unknown_postgres;
    case_rotate_refresh_after_token_expiry_is_expired =>
        rotate_refresh_after_token_expiry_is_expired_sqlite,
        rotate_refresh_after_token_expiry_is_expired_postgres;
    case_rotate_refresh_after_session_expiry_is_expired =>
        rotate_refresh_after_session_expiry_is_expired_sqlite,
        rotate_refresh_after_session_expiry_is_expired_postgres;
    case_rotate_refresh_of_revoked_session_is_revoked =>
        rotate_refresh_of_revoked_session_is_revoked_sqlite,
        rotate_refresh_of_revoked_session_is_revoked_postgres;
    case_concurrent_rotations_of_one_token_have_exactly_one_winner =>
        concurrent_rotations_of_one_token_have_exactly_one_winner_sqlite,
        concurrent_rotations_of_one_token_have_exactly_one_winner_postgres;
    case_concurrent_rotations_of_many_sessions_all_rotate_once =>
        concurrent_rotations_of_many_sessions_all_rotate_once_sqlite,
        concurrent_rotations_of_many_sessions_all_rotate_once_postgres;
    case_session_by_web_token_finds_only_active_unexpired_web_sessions =>
        session_by_web_token_finds_only_active_unexpired_web_sessions_sqlite,
        session_by_web_token_finds_only_active_unexpired_web_sessions_postgres;
    case_touch_session_records_activity_at_most_once_per_gap =>
        touch_session_records_activity_at_most_once_per_gap_sqlite,
        touch_session_records_activity_at_most_once_per_gap_postgres;
    case_active_sessions_lists_only_active_unexpired_sessions_of_the_account =>
        active_sessions_lists_only_active_unexpired_sessions_of_the_account_sqlite,
        active_sessions_lists_only_active_unexpired_sessions_of_the_account_postgres;
    case_list_sessions_filters_by_account_and_pages =>
        list_sessions_filters_by_account_and_pages_sqlite,
        list_sessions_filters_by_account_and_pages_postgres;
    case_revoke_session_returns_true_then_false =>
        revoke_session_returns_true_then_false_sqlite,
        revoke_session_returns_true_then_false_postgres;
    case_revoke_account_sessions_keeps_the_given_session =>
        revoke_account_sessions_keeps_the_given_session_sqlite,
        revoke_account_sessions_keeps_the_given_session_postgres;
    case_count_sessions_counts_every_session =>
        count_sessions_counts_every_session_sqlite,
        count_sessions_counts_every_session_postgres;
    case_insert_first_signing_key_twice_keeps_the_first =>
        insert_first_signing_key_twice_keeps_the_first_sqlite,
        insert_first_signing_key_twice_keeps_the_first_postgres;
    case_concurrent_first_signing_key_inserts_keep_one =>
        concurrent_first_signing_key_inserts_keep_one_sqlite,
        concurrent_first_signing_key_inserts_keep_one_postgres;
    case_insert_first_signing_key_after_a_rotation_adds_nothing =>
        insert_first_signing_key_after_a_rotation_adds_nothing_sqlite,
        insert_first_signing_key_after_a_rotation_adds_nothing_postgres;
    case_reseal_signing_key_replaces_only_the_value_it_was_given =>
        reseal_signing_key_replaces_only_the_value_it_was_given_sqlite,
        reseal_signing_key_replaces_only_the_value_it_was_given_postgres;
    case_rotate_signing_key_retires_the_previous_key =>
        rotate_signing_key_retires_the_previous_key_sqlite,
        rotate_signing_key_retires_the_previous_key_postgres;
    case_put_setting_then_get_returns_the_latest_value =>
        put_setting_then_get_returns_the_latest_value_sqlite,
        put_setting_then_get_returns_the_latest_value_postgres;
    case_settings_round_trip_any_json_value =>
        settings_round_trip_any_json_value_sqlite,
        settings_round_trip_any_json_value_postgres;
    case_setting_or_insert_keeps_the_first_value =>
        setting_or_insert_keeps_the_first_value_sqlite,
        setting_or_insert_keeps_the_first_value_postgres;
    case_concurrent_setting_or_insert_calls_agree =>
        concurrent_setting_or_insert_calls_agree_sqlite,
        concurrent_setting_or_insert_calls_agree_postgres;
    case_append_audit_round_trips_every_field =>
        append_audit_round_trips_every_field_sqlite,
        append_audit_round_trips_every_field_postgres;
    case_list_audit_filters_by_account =>
        list_audit_filters_by_account_sqlite,
        list_audit_filters_by_account_postgres;
    case_list_audit_filters_by_action =>
        list_audit_filters_by_action_sqlite,
        list_audit_filters_by_action_postgres;
    case_list_audit_filters_by_outcome =>
        list_audit_filters_by_outcome_sqlite,
        list_audit_filters_by_outcome_postgres;
    case_list_audit_filters_by_time_range =>
        list_audit_filters_by_time_range_sqlite,
        list_audit_filters_by_time_range_postgres;
    case_list_audit_pages_newest_first =>
        list_audit_pages_newest_first_sqlite,
        list_audit_pages_newest_first_postgres;
    case_prune_audit_deletes_only_older_events =>
        prune_audit_deletes_only_older_events_sqlite,
        prune_audit_deletes_only_older_events_postgres;
    case_session_by_refresh_token_finds_the_session_whatever_the_token_state =>
        session_by_refresh_token_finds_the_session_whatever_the_token_state_sqlite,
        session_by_refresh_token_finds_the_session_whatever_the_token_state_postgres;
    case_workspaces_are_found_by_id_and_slug_listed_and_disabled =>
        workspaces_are_found_by_id_and_slug_listed_and_disabled_sqlite,
        workspaces_are_found_by_id_and_slug_listed_and_disabled_postgres;
    case_branches_are_found_by_id_and_code_listed_and_disabled =>
        branches_are_found_by_id_and_code_listed_and_disabled_sqlite,
        branches_are_found_by_id_and_code_listed_and_disabled_postgres;
    case_members_are_found_by_id_and_listed_per_workspace =>
        members_are_found_by_id_and_listed_per_workspace_sqlite,
        members_are_found_by_id_and_listed_per_workspace_postgres;
    case_invitations_are_one_pending_per_account_and_workspace =>
        invitations_are_one_pending_per_account_and_workspace_sqlite,
        invitations_are_one_pending_per_account_and_workspace_postgres;
    case_accepting_an_invitation_creates_the_member_atomically =>
        accepting_an_invitation_creates_the_member_atomically_sqlite,
        accepting_an_invitation_creates_the_member_atomically_postgres;
    case_an_invitation_is_decided_once_and_never_after_expiry =>
        an_invitation_is_decided_once_and_never_after_expiry_sqlite,
        an_invitation_is_decided_once_and_never_after_expiry_postgres;
    case_ping_answers_on_an_open_store =>
        ping_answers_on_an_open_store_sqlite,
        ping_answers_on_an_open_store_postgres;
    case_personal_access_tokens_round_trip_by_hash =>
        personal_access_tokens_round_trip_by_hash_sqlite,
        personal_access_tokens_round_trip_by_hash_postgres;
    case_personal_access_token_hashes_are_unique =>
        personal_access_token_hashes_are_unique_sqlite,
        personal_access_token_hashes_are_unique_postgres;
    case_personal_access_token_use_is_recorded_at_most_once_per_gap =>
        personal_access_token_use_is_recorded_at_most_once_per_gap_sqlite,
        personal_access_token_use_is_recorded_at_most_once_per_gap_postgres;
    case_revoking_a_personal_access_token_keeps_it_recognisable =>
        revoking_a_personal_access_token_keeps_it_recognisable_sqlite,
        revoking_a_personal_access_token_keeps_it_recognisable_postgres;
    case_api_keys_round_trip_rotate_and_change_status =>
        api_keys_round_trip_rotate_and_change_status_sqlite,
        api_keys_round_trip_rotate_and_change_status_postgres;
    case_deleting_a_service_account_takes_its_keys_and_spares_people =>
        deleting_a_service_account_takes_its_keys_and_spares_people_sqlite,
        deleting_a_service_account_takes_its_keys_and_spares_people_postgres;
}

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

const T0: i64 = 1_800_000_000_000;
const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const SESSION_LIFETIME: i64 = 30 * DAY;
const TOKEN_LIFETIME: i64 = 7 * DAY;
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA";
const NEW_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdG5ld3NhbHQ$bmV3aGFzaG5ld2hhc2g";

/// `offset_ms` after a fixed instant.
fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + offset_ms)
}

fn page(page: u32, page_size: u32) -> Page {
    Page { page, page_size }
}

fn ids(items: impl IntoIterator<Item = Id>) -> BTreeSet<Id> {
    items.into_iter().collect()
}

/// 32 arbitrary bytes standing in for a token's SHA-256.
fn token_hash() -> Vec<u8> {
    let mut hash = Uuid::new_v4().as_bytes().to_vec();
    hash.extend_from_slice(Uuid::new_v4().as_bytes());
    hash
}

fn audit(action: &str, at: Timestamp) -> AuditEvent {
    AuditEvent {
        id: new_id(),
        at,
        actor_id: None,
        action: action.into(),
        target_id: None,
        outcome: "success".into(),
        reason: None,
        ip: None,
        user_agent: None,
        request_id: None,
        details: json!({}),
    }
}

fn account(email: &str, username: Option<&str>, created: Timestamp) -> Account {
    Account {
        id: new_id(),
        email: email.into(),
        username: username.map(str::to_string),
        display_name: None,
        status: AccountStatus::Active,
        kind: Default::default(),
        must_change_password: false,
        roles: Vec::new(),
        created_at: created,
        updated_at: created,
        last_login_at: None,
    }
}

async fn create(store: &dyn Store, account: Account, password_hash: Option<&str>) -> Account {
    let new = NewAccount {
        account: account.clone(),
        password_hash: password_hash.map(str::to_string),
        email_verified: true,
    };
    store
        .create_account(&new, &audit("account.create", account.created_at))
        .await
        .expect("create account");
    account
}

/// An active account `<name>@example.com` with a password.
async fn seed(store: &dyn Store, name: &str) -> Account {
    create(
        store,
        account(&format!("{name}@example.com"), Some(name), at(0)),
        Some(HASH),
    )
    .await
}

fn login_commit(account_id: Id, kind: TokenKind, created: Timestamp) -> LoginCommit {
    LoginCommit {
        session: Session {
            id: new_id(),
            account_id,
            status: SessionStatus::Active,
            auth_methods: vec!["pwd".into(), "totp".into()],
            ip: Some("192.0.2.7".into()),
            user_agent: Some("conformance/1.0".into()),
            created_at: created,
            last_seen_at: created,
            expires_at: created.plus(ms(SESSION_LIFETIME)),
            revoked_at: None,
            workspace_id: None,
            branch_id: None,
        },
        token: NewToken {
            hash: token_hash(),
            expires_at: created.plus(ms(TOKEN_LIFETIME)),
        },
        token_kind: kind,
        rehash: None,
        revoke_others: false,
        audit: AuditEvent {
            actor_id: Some(account_id),
            ..audit("login", created)
        },
    }
}

/// Commits a plain login; returns the session and its token hash.
async fn login(
    store: &dyn Store,
    account_id: Id,
    kind: TokenKind,
    created: Timestamp,
) -> (Session, Vec<u8>) {
    let commit = login_commit(account_id, kind, created);
    store.commit_login(&commit).await.expect("commit login");
    (commit.session, commit.token.hash)
}

fn ms(millis: i64) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(millis).unwrap())
}

fn fresh_token(now: Timestamp) -> NewToken {
    NewToken {
        hash: token_hash(),
        expires_at: now.plus(ms(TOKEN_LIFETIME)),
    }
}

fn policy(now: Timestamp) -> RefreshPolicy {
    RefreshPolicy {
        now,
        idle_ms: TOKEN_LIFETIME,
    }
}

async fn session(store: &dyn Store, id: Id) -> Session {
    store
        .session_by_id(id)
        .await
        .unwrap()
        .expect("session exists")
}

async fn status_of(store: &dyn Store, id: Id) -> SessionStatus {
    session(store, id).await.status
}

/// The account with its roles in a canonical order (the port does not promise one).
fn sorted_roles(mut account: Account) -> Account {
    account.roles.sort();
    account
}

fn signing_key(kid: &str, created: Timestamp) -> SigningKey {
    SigningKey {
        kid: kid.into(),
        alg: "EdDSA".into(),
        private_key: format!("private-{kid}").into_bytes(),
        public_key: [&[0, 1, 2, 254, 255][..], kid.as_bytes()].concat(),
        created_at: created,
        retired_at: None,
    }
}

fn event(action: &str, outcome: &str, at: Timestamp) -> AuditEvent {
    AuditEvent {
        outcome: outcome.into(),
        ..audit(action, at)
    }
}

async fn audit_items(store: &dyn Store, filter: &AuditFilter) -> (BTreeSet<Id>, u64) {
    let listed = store.list_audit(filter, page(1, 100)).await.unwrap();
    (ids(listed.items.iter().map(|e| e.id)), listed.total)
}

// ---------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------

async fn case_create_account_round_trips_by_id_email_and_username(store: Arc<dyn Store>) {
    let mut ann = account("ann@example.com", Some("ann"), at(0));
    ann.display_name = Some("Ann Example".into());
    ann.roles = vec!["auditor".into(), "admin".into()];
    ann.must_change_password = true;
    create(&*store, ann.clone(), Some(HASH)).await;
    let bare = create(&*store, account("bare@example.com", None, at(SECOND)), None).await;

    let expected = sorted_roles(ann.clone());
    let by_id = store.account_by_id(ann.id).await.unwrap().expect("by id");
    let by_email = store
        .account_by_email("ann@example.com")
        .await
        .unwrap()
        .expect("by email");
    let by_username = store
        .account_by_username("ann")
        .await
        .unwrap()
        .expect("by username");
    assert_eq!(sorted_roles(by_id), expected);
    assert_eq!(sorted_roles(by_email), expected);
    assert_eq!(sorted_roles(by_username), expected);
    assert_eq!(
        store.account_by_id(bare.id).await.unwrap(),
        Some(bare.clone())
    );
    assert_eq!(
        store.password_hash(ann.id).await.unwrap().as_deref(),
        Some(HASH)
    );
    assert_eq!(store.password_hash(bare.id).await.unwrap(), None);
    assert_eq!(store.count_accounts().await.unwrap(), 2);

    assert_eq!(store.account_by_id(new_id()).await.unwrap(), None);
    assert_eq!(
        store.account_by_email("nobody@example.com").await.unwrap(),
        None
    );
    assert_eq!(store.account_by_username("nobody").await.unwrap(), None);

    let filter = AuditFilter {
        action: Some("account.create".into()),
        ..AuditFilter::default()
    };
    assert_eq!(
        store.list_audit(&filter, page(1, 10)).await.unwrap().total,
        2
    );
}

async fn case_create_account_with_taken_email_is_conflict(store: Arc<dyn Store>) {
    seed(&*store, "ann").await;
    let mut dup = account("ann@example.com", Some("other"), at(SECOND));
    dup.roles = vec!["admin".into()];
    let new = NewAccount {
        account: dup.clone(),
        password_hash: Some(HASH.into()),
        email_verified: true,
    };

    let err = store
        .create_account(&new, &audit("account.create", at(SECOND)))
        .await
        .unwrap_err();

    assert!(
        matches!(err, StoreError::Conflict),
        "expected Conflict, got {err:?}"
    );
    assert_eq!(store.count_accounts().await.unwrap(), 1);
    assert_eq!(store.account_by_username("other").await.unwrap(), None);
    assert_eq!(store.password_hash(dup.id).await.unwrap(), None);
    let filter = AuditFilter {
        action: Some("account.create".into()),
        ..AuditFilter::default()
    };
    assert_eq!(
        store.list_audit(&filter, page(1, 10)).await.unwrap().total,
        1,
        "audit rolled back"
    );
}

async fn case_create_account_with_taken_username_is_conflict(store: Arc<dyn Store>) {
    seed(&*store, "ann").await;
    let dup = account("someone-else@example.com", Some("ann"), at(SECOND));
    let new = NewAccount {
        account: dup.clone(),
        password_hash: None,
        email_verified: true,
    };

    let err = store
        .create_account(&new, &audit("account.create", at(SECOND)))
        .await
        .unwrap_err();

    assert!(
        matches!(err, StoreError::Conflict),
        "expected Conflict, got {err:?}"
    );
    assert_eq!(
        store
            .account_by_email("someone-else@example.com")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.count_accounts().await.unwrap(), 1);
}

/// Five accounts whose email, username or display name mention "smith" in three of them.
async fn seed_directory(store: &dyn Store) -> [Account; 5] {
    let mut ann = account("ann@example.com", Some("ann"), at(0));
    ann.display_name = Some("Ann Smith".into());
    let bob = account("bob@example.com", Some("bob"), at(SECOND));
    let smith = account("smith@example.org", None, at(2 * SECOND));
    let mut carol = account("carol@example.com", Some("jsmith"), at(3 * SECOND));
    carol.display_name = Some("Carol".into());
    let mut dave = account("dave@example.com", Some("dave"), at(4 * SECOND));
    dave.display_name = Some("Dave".into());
    let all = [ann, bob, smith, carol, dave];
    for a in &all {
        create(store, a.clone(), Some(HASH)).await;
    }
    all
}

async fn case_list_accounts_pages_with_totals(store: Arc<dyn Store>) {
    let all = seed_directory(&*store).await;

    let mut seen = Vec::new();
    for (n, expected_len) in [(1, 2), (2, 2), (3, 1), (4, 0)] {
        let listed = store.list_accounts(None, page(n, 2)).await.unwrap();
        assert_eq!(listed.total, 5, "page {n}");
        assert_eq!(listed.items.len(), expected_len, "page {n}");
        seen.extend(listed.items.iter().map(|a| a.id));
    }

    assert_eq!(seen.len(), 5, "pages overlap: {seen:?}");
    assert_eq!(ids(seen), ids(all.iter().map(|a| a.id)));
}

async fn case_list_accounts_filters_by_email_username_or_display_name(store: Arc<dyn Store>) {
    let [ann, _bob, smith, carol, _dave] = seed_directory(&*store).await;

    let listed = store
        .list_accounts(Some("smith"), page(1, 10))
        .await
        .unwrap();
    assert_eq!(listed.total, 3);
    assert_eq!(
        ids(listed.items.iter().map(|a| a.id)),
        ids([ann.id, smith.id, carol.id])
    );

    let second = store
        .list_accounts(Some("smith"), page(2, 2))
        .await
        .unwrap();
    assert_eq!(second.total, 3);
    assert_eq!(second.items.len(), 1);

    let org = store
        .list_accounts(Some("example.org"), page(1, 10))
        .await
        .unwrap();
    assert_eq!(org.total, 1);
    assert_eq!(
        org.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![smith.id]
    );

    let none = store
        .list_accounts(Some("nobody"), page(1, 10))
        .await
        .unwrap();
    assert_eq!(none.total, 0);
    assert!(none.items.is_empty());
}

async fn case_list_accounts_query_treats_wildcards_literally(store: Arc<dyn Store>) {
    seed_directory(&*store).await;
    create(
        &*store,
        account("under_score@example.com", Some("u_s"), at(9 * SECOND)),
        None,
    )
    .await;

    for wildcard in ["%", "_"] {
        let listed = store
            .list_accounts(Some(wildcard), page(1, 10))
            .await
            .unwrap();
        let emails: Vec<&str> = listed.items.iter().map(|a| a.email.as_str()).collect();
        let expected = if wildcard == "_" {
            vec!["under_score@example.com"]
        } else {
            vec![]
        };
        assert_eq!(emails, expected, "query {wildcard:?}");
        assert_eq!(listed.total, expected.len() as u64, "query {wildcard:?}");
    }
}

async fn case_disabling_an_account_revokes_its_active_sessions(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let bob = seed(&*store, "bob").await;
    let (s1, _) = login(&*store, ann.id, TokenKind::Refresh, at(SECOND)).await;
    let (s2, _) = login(&*store, ann.id, TokenKind::Web, at(2 * SECOND)).await;
    let (s3, _) = login(&*store, ann.id, TokenKind::Refresh, at(3 * SECOND)).await;
    let (bob_session, _) = login(&*store, bob.id, TokenKind::Refresh, at(3 * SECOND)).await;
    assert!(
        store
            .revoke_session(s3.id, at(4 * SECOND), &audit("logout", at(4 * SECOND)))
            .await
            .unwrap()
    );

    let (disabled, revoked) = store
        .set_account_status(
            ann.id,
            AccountStatus::Disabled,
            at(5 * SECOND),
            &audit("account.disable", at(5 * SECOND)),
        )
        .await
        .unwrap()
        .expect("account exists");

    assert_eq!(disabled.status, AccountStatus::Disabled);
    assert_eq!(disabled.updated_at, at(5 * SECOND));
    assert_eq!(ids(revoked), ids([s1.id, s2.id]));
    for id in [s1.id, s2.id] {
        let s = session(&*store, id).await;
        assert_eq!(
            (s.status, s.revoked_at),
            (SessionStatus::Revoked, Some(at(5 * SECOND)))
        );
    }
    assert_eq!(
        session(&*store, s3.id).await.revoked_at,
        Some(at(4 * SECOND)),
        "earlier revocation kept"
    );
    assert_eq!(
        status_of(&*store, bob_session.id).await,
        SessionStatus::Active
    );
    let stored = store.account_by_id(ann.id).await.unwrap().expect("account");
    assert_eq!(stored.status, AccountStatus::Disabled);
}

async fn admin(store: &dyn Store, name: &str) -> Account {
    let mut a = account(&format!("{name}@example.com"), None, at(0));
    a.roles = vec!["admin".into()];
    create(store, a, None).await
}

async fn disable(store: &dyn Store, id: Id) -> StoreResult<Option<(Account, Vec<Id>)>> {
    store
        .set_account_status(
            id,
            AccountStatus::Disabled,
            at(SECOND),
            &audit("account.disable", at(SECOND)),
        )
        .await
}

async fn case_the_last_active_admin_cannot_be_disabled(store: Arc<dyn Store>) {
    let root = admin(&*store, "root").await;
    let second = admin(&*store, "second").await;
    let user = seed(&*store, "ann").await;
    disable(&*store, second.id).await.unwrap().expect("exists");
    let refused = disable(&*store, root.id).await;
    assert!(matches!(refused, Err(StoreError::LastAdmin)), "{refused:?}");
    let kept = store
        .account_by_id(root.id)
        .await
        .unwrap()
        .expect("account");
    assert_eq!(kept.status, AccountStatus::Active);
    // Other accounts are not affected by the rule.
    disable(&*store, user.id).await.unwrap().expect("exists");
}

async fn case_two_admins_disabling_each_other_leave_one(store: Arc<dyn Store>) {
    let a = admin(&*store, "a").await;
    let b = admin(&*store, "b").await;
    let (x, y) = tokio::join!(disable(&*store, a.id), disable(&*store, b.id));
    let refused = [&x, &y]
        .iter()
        .filter(|r| matches!(r, Err(StoreError::LastAdmin)))
        .count();
    assert_eq!(refused, 1, "{x:?} {y:?}");
    let mut active = 0;
    for id in [a.id, b.id] {
        let acc = store.account_by_id(id).await.unwrap().expect("account");
        active += usize::from(acc.status == AccountStatus::Active);
    }
    assert_eq!(active, 1);
}

async fn case_enabling_an_account_revokes_nothing(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    store
        .set_account_status(
            ann.id,
            AccountStatus::Disabled,
            at(SECOND),
            &audit("account.disable", at(SECOND)),
        )
        .await
        .unwrap()
        .expect("account exists");
    let (s1, _) = login(&*store, ann.id, TokenKind::Refresh, at(2 * SECOND)).await;

    let (enabled, revoked) = store
        .set_account_status(
            ann.id,
            AccountStatus::Active,
            at(3 * SECOND),
            &audit("account.enable", at(3 * SECOND)),
        )
        .await
        .unwrap()
        .expect("account exists");

    assert_eq!(enabled.status, AccountStatus::Active);
    assert!(revoked.is_empty(), "{revoked:?}");
    assert_eq!(status_of(&*store, s1.id).await, SessionStatus::Active);
    let unknown = store
        .set_account_status(
            new_id(),
            AccountStatus::Disabled,
            at(4 * SECOND),
            &audit("account.disable", at(4 * SECOND)),
        )
        .await
        .unwrap();
    assert!(unknown.is_none());
}

async fn case_set_must_change_password_toggles_the_flag(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    assert!(!ann.must_change_password);

    let on = store
        .set_must_change_password(
            ann.id,
            true,
            at(SECOND),
            &audit("account.update", at(SECOND)),
        )
        .await
        .unwrap()
        .expect("account exists");
    assert!(on.must_change_password);
    assert_eq!(on.updated_at, at(SECOND));
    assert!(
        store
            .account_by_id(ann.id)
            .await
            .unwrap()
            .expect("account")
            .must_change_password
    );

    let off = store
        .set_must_change_password(
            ann.id,
            false,
            at(2 * SECOND),
            &audit("account.update", at(2 * SECOND)),
        )
        .await
        .unwrap()
        .expect("account exists");
    assert!(!off.must_change_password);
    assert!(
        !store
            .account_by_id(ann.id)
            .await
            .unwrap()
            .expect("account")
            .must_change_password
    );

    let unknown = store
        .set_must_change_password(
            new_id(),
            true,
            at(3 * SECOND),
            &audit("account.update", at(3 * SECOND)),
        )
        .await
        .unwrap();
    assert!(unknown.is_none());
}

// ---------------------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------------------

async fn case_change_password_replaces_hash_and_keeps_one_session(store: Arc<dyn Store>) {
    let mut ann = account("ann@example.com", Some("ann"), at(0));
    ann.must_change_password = true;
    let ann = create(&*store, ann, Some(HASH)).await;
    let (s1, _) = login(&*store, ann.id, TokenKind::Refresh, at(SECOND)).await;
    let (s2, _) = login(&*store, ann.id, TokenKind::Web, at(2 * SECOND)).await;
    let (s3, _) = login(&*store, ann.id, TokenKind::Refresh, at(3 * SECOND)).await;

    let revoked = store
        .change_password(
            ann.id,
            NEW_HASH,
            Some(s2.id),
            at(MINUTE),
            &audit("password.change", at(MINUTE)),
        )
        .await
        .unwrap();

    assert_eq!(ids(revoked), ids([s1.id, s3.id]));
    assert_eq!(
        store.password_hash(ann.id).await.unwrap().as_deref(),
        Some(NEW_HASH)
    );
    assert!(
        !store
            .account_by_id(ann.id)
            .await
            .unwrap()
            .expect("account")
            .must_change_password
    );
    assert_eq!(status_of(&*store, s2.id).await, SessionStatus::Active);
    assert_eq!(status_of(&*store, s1.id).await, SessionStatus::Revoked);
    assert_eq!(status_of(&*store, s3.id).await, SessionStatus::Revoked);
}

async fn case_change_password_without_keep_revokes_every_session(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let bob = seed(&*store, "bob").await;
    let (s1, _) = login(&*store, ann.id, TokenKind::Refresh, at(SECOND)).await;
    let (s2, _) = login(&*store, ann.id, TokenKind::Web, at(2 * SECOND)).await;
    let (bob_session, _) = login(&*store, bob.id, TokenKind::Web, at(2 * SECOND)).await;

    let revoked = store
        .change_password(
            ann.id,
            NEW_HASH,
            None,
            at(MINUTE),
            &audit("password.reset", at(MINUTE)),
        )
        .await
        .unwrap();

    assert_eq!(ids(revoked), ids([s1.id, s2.id]));
    assert!(
        store
            .active_sessions(ann.id, at(MINUTE))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        status_of(&*store, bob_session.id).await,
        SessionStatus::Active
    );
    assert_eq!(
        store.password_hash(bob.id).await.unwrap().as_deref(),
        Some(HASH)
    );
}

async fn case_change_password_sets_a_first_password(store: Arc<dyn Store>) {
    let sso = create(&*store, account("sso@example.com", None, at(0)), None).await;
    assert_eq!(store.password_hash(sso.id).await.unwrap(), None);

    let revoked = store
        .change_password(
            sso.id,
            NEW_HASH,
            None,
            at(SECOND),
            &audit("password.change", at(SECOND)),
        )
        .await
        .unwrap();

    assert!(revoked.is_empty());
    assert_eq!(
        store.password_hash(sso.id).await.unwrap().as_deref(),
        Some(NEW_HASH)
    );
}

// ---------------------------------------------------------------------------------------
// Sessions and refresh rotation
// ---------------------------------------------------------------------------------------

async fn case_commit_login_writes_session_token_last_login_and_audit(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let commit = login_commit(ann.id, TokenKind::Refresh, at(MINUTE));

    let revoked = store.commit_login(&commit).await.unwrap();

    assert!(revoked.is_empty());
    assert_eq!(
        store.session_by_id(commit.session.id).await.unwrap(),
        Some(commit.session.clone())
    );
    let stored = store.account_by_id(ann.id).await.unwrap().expect("account");
    assert_eq!(stored.last_login_at, Some(at(MINUTE)));
    let filter = AuditFilter {
        action: Some("login".into()),
        ..AuditFilter::default()
    };
    let logged = store.list_audit(&filter, page(1, 10)).await.unwrap();
    assert_eq!(logged.items, vec![commit.audit.clone()]);
    assert_eq!(store.count_sessions().await.unwrap(), 1);
    // The refresh token was stored with the session.
    let rotation = store
        .rotate_refresh(
            &commit.token.hash,
            &fresh_token(at(2 * MINUTE)),
            policy(at(2 * MINUTE)),
        )
        .await
        .unwrap();
    assert!(
        matches!(&rotation, Rotation::Rotated(s) if s.id == commit.session.id),
        "{rotation:?}"
    );
}

async fn case_commit_login_with_revoke_others_revokes_older_sessions(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let bob = seed(&*store, "bob").await;
    let (s1, _) = login(&*store, ann.id, TokenKind::Refresh, at(SECOND)).await;
    let (s2, _) = login(&*store, ann.id, TokenKind::Web, at(2 * SECOND)).await;
    let (bob_session, _) = login(&*store, bob.id, TokenKind::Refresh, at(2 * SECOND)).await;
    let commit = LoginCommit {
        revoke_others: true,
        ..login_commit(ann.id, TokenKind::Refresh, at(3 * SECOND))
    };

    let revoked = store.commit_login(&commit).await.unwrap();

    assert_eq!(ids(revoked), ids([s1.id, s2.id]));
    for id in [s1.id, s2.id] {
        let s = session(&*store, id).await;
        assert_eq!(
            (s.status, s.revoked_at),
            (SessionStatus::Revoked, Some(at(3 * SECOND)))
        );
    }
    let active = store.active_sessions(ann.id, at(4 * SECOND)).await.unwrap();
    assert_eq!(
        active.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![commit.session.id]
    );
    assert_eq!(
        status_of(&*store, bob_session.id).await,
        SessionStatus::Active
    );
}

async fn case_commit_login_with_rehash_replaces_the_password_hash(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let commit = LoginCommit {
        rehash: Some(NEW_HASH.into()),
        ..login_commit(ann.id, TokenKind::Web, at(SECOND))
    };

    store.commit_login(&commit).await.unwrap();

    assert_eq!(
        store.password_hash(ann.id).await.unwrap().as_deref(),
        Some(NEW_HASH)
    );
}

async fn case_rotate_refresh_spends_old_token_and_stores_new(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let (s, t1) = login(&*store, ann.id, TokenKind::Refresh, at(0)).await;
    let t2 = fresh_token(at(MINUTE));

    let rotation = store
        .rotate_refresh(&t1, &t2, policy(at(MINUTE)))
        .await
        .unwrap();

    let Rotation::Rotated(rotated) = rotation else {
        panic!("expected Rotated, got {rotation:?}");
    };
    assert_eq!((rotated.id, rotated.account_id), (s.id, ann.id));
    assert_eq!(rotated.status, SessionStatus::Active);
    assert_eq!(rotated.last_seen_at, at(MINUTE));
    assert_eq!(session(&*store, s.id).await.last_seen_at, at(MINUTE));
    let next = store
        .rotate_refresh(
            &t2.hash,
            &fresh_token(at(2 * MINUTE)),
            policy(at(2 * MINUTE)),
        )
        .await
        .unwrap();
    assert!(
        matches!(&next, Rotation::Rotated(r) if r.id == s.id),
        "new token rotates: {next:?}"
    );
}

async fn case_rotate_refresh_with_spent_token_is_reuse_and_revokes_session(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let (s, t1) = login(&*store, ann.id, TokenKind::Refresh, at(0)).await;
    let t2 = fresh_token(at(MINUTE));
    let first = store
        .rotate_refresh(&t1, &t2, policy(at(MINUTE)))
        .await
        .unwrap();
    assert!(matches!(first, Rotation::Rotated(_)), "{first:?}");
    let t3 = fresh_token(at(2 * MINUTE));

    let reuse = store
        .rotate_refresh(&t1, &t3, policy(at(2 * MINUTE)))
        .await
        .unwrap();

    assert!(
        matches!(
            reuse,
            Rotation::Reused { session_id, account_id }
                if session_id == s.id && account_id == ann.id
        ),
        "{reuse:?}"
    );
    assert_eq!(status_of(&*store, s.id).await, SessionStatus::Revoked);
    let successor = store
        .rotate_refresh(
            &t2.hash,
            &fresh_token(at(3 * MINUTE)),
            policy(at(3 * MINUTE)),
        )
        .await
        .unwrap();
    assert!(
        matches!(successor, Rotation::Revoked),
        "the whole family is revoked: {successor:?}"
    );
    let offered = store
        .rotate_refresh(
            &t3.hash,
            &fresh_token(at(3 * MINUTE)),
            policy(at(3 * MINUTE)),
        )
        .await
        .unwrap();
    assert!(
        matches!(offered, Rotation::Unknown),
        "a reuse stores no new token: {offered:?}"
    );
}

async fn case_rotate_refresh_with_unknown_or_web_token_is_unknown(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let (web, web_token) = login(&*store, ann.id, TokenKind::Web, at(0)).await;

    let unknown = store
        .rotate_refresh(&token_hash(), &fresh_token(at(MINUTE)), policy(at(MINUTE)))
        .await
        .unwrap();
    let as_refresh = store
        .rotate_refresh(&web_token, &fresh_token(at(MINUTE)), policy(at(MINUTE)))
        .await
        .unwrap();

    assert!(matches!(unknown, Rotation::Unknown), "{unknown:?}");
    assert!(
        matches!(as_refresh, Rotation::Unknown),
        "a web token is no refresh token: {as_refresh:?}"
    );
    let still = store
        .session_by_web_token(&web_token, at(MINUTE))
        .await
        .unwrap();
    assert_eq!(still.map(|s| s.id), Some(web.id));
}

async fn case_rotate_refresh_after_token_expiry_is_expired(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let (s, t1) = login(&*store, ann.id, TokenKind::Refresh, at(0)).await;
    let late = at(TOKEN_LIFETIME + 1);
    let t2 = fresh_token(late);

    let rotation = store.rotate_refresh(&t1, &t2, policy(late)).await.unwrap();

    assert!(matches!(rotation, Rotation::Expired), "{rotation:?}");
    assert_eq!(
        status_of(&*store, s.id).await,
        SessionStatus::Active,
        "expiry is no reuse"
    );
    let offered = store
        .rotate_refresh(&t2.hash, &fresh_token(late), policy(late))
        .await
        .unwrap();
    assert!(
        matches!(offered, Rotation::Unknown),
        "no new token stored: {offered:?}"
    );
}

async fn case_rotate_refresh_after_session_expiry_is_expired(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let mut commit = login_commit(ann.id, TokenKind::Refresh, at(0));
    commit.session.expires_at = at(HOUR);
    store.commit_login(&commit).await.unwrap();
    let late = at(HOUR + 1);

    let rotation = store
        .rotate_refresh(&commit.token.hash, &fresh_token(late), policy(late))
        .await
        .unwrap();

    assert!(
        matches!(rotation, Rotation::Expired),
        "absolute lifetime is over: {rotation:?}"
    );
}

async fn case_rotate_refresh_of_revoked_session_is_revoked(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let (logged_out, t1) = login(&*store, ann.id, TokenKind::Refresh, at(0)).await;
    let (_, t2) = login(&*store, ann.id, TokenKind::Refresh, at(SECOND)).await;
    assert!(
        store
            .revoke_session(logged_out.id, at(MINUTE), &audit("logout", at(MINUTE)))
            .await
            .unwrap()
    );
    store
        .revoke_account_sessions(ann.id, None, at(MINUTE), &audit("logout.all", at(MINUTE)))
        .await
        .unwrap();

    for token in [t1, t2] {
        let rotation = store
            .rotate_refresh(&token, &fresh_token(at(HOUR)), policy(at(HOUR)))
            .await
            .unwrap();
        assert!(matches!(rotation, Rotation::Revoked), "{rotation:?}");
    }
}

/// Many sessions refreshing at once (SQLite group-commits them in batches; PostgreSQL runs
/// them on parallel connections), each token sent twice: every session rotates exactly
/// once, to its own successor, and each successor rotates again.
async fn case_concurrent_rotations_of_many_sessions_all_rotate_once(store: Arc<dyn Store>) {
    const SESSIONS: usize = 40;
    let ann = seed(&*store, "ann").await;
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(login(&*store, ann.id, TokenKind::Refresh, at(0)).await);
    }
    let start = Arc::new(Barrier::new(2 * SESSIONS));
    let mut racers = JoinSet::new();
    for (s, token) in &sessions {
        for _ in 0..2 {
            let (store, start, old, id) = (store.clone(), start.clone(), token.clone(), s.id);
            racers.spawn(async move {
                let next = fresh_token(at(MINUTE));
                start.wait().await;
                let r = store.rotate_refresh(&old, &next, policy(at(MINUTE))).await;
                (id, next, r)
            });
        }
    }
    let mut winners = std::collections::HashMap::new();
    while let Some(joined) = racers.join_next().await {
        let (id, next, r) = joined.expect("racer finished");
        match r.expect("rotation succeeded") {
            Rotation::Rotated(r) => {
                assert_eq!(r.id, id, "a rotation returns its own session");
                assert!(
                    winners.insert(id, next).is_none(),
                    "two winners for one token"
                );
            }
            Rotation::Reused { session_id, .. } => assert_eq!(session_id, id),
            Rotation::Revoked => {}
            other => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!(winners.len(), SESSIONS, "every session rotated once");
    for (id, next) in winners {
        if status_of(&*store, id).await == SessionStatus::Revoked {
            continue; // the loser was classified as reuse and revoked the session
        }
        let again = store
            .rotate_refresh(
                &next.hash,
                &fresh_token(at(2 * MINUTE)),
                policy(at(2 * MINUTE)),
            )
            .await
            .unwrap();
        assert!(
            matches!(&again, Rotation::Rotated(r) if r.id == id),
            "{again:?}"
        );
    }
}

async fn case_concurrent_rotations_of_one_token_have_exactly_one_winner(store: Arc<dyn Store>) {
    const RACERS: usize = 16;
    let ann = seed(&*store, "ann").await;
    let (s, t1) = login(&*store, ann.id, TokenKind::Refresh, at(0)).await;
    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for _ in 0..RACERS {
        let (store, start, old) = (store.clone(), start.clone(), t1.clone());
        racers.spawn(async move {
            start.wait().await;
            store
                .rotate_refresh(&old, &fresh_token(at(MINUTE)), policy(at(MINUTE)))
                .await
        });
    }

    let mut rotated = 0;
    let mut reused = 0;
    while let Some(joined) = racers.join_next().await {
        match joined.expect("racer finished").expect("rotation succeeded") {
            Rotation::Rotated(r) => {
                assert_eq!(r.id, s.id);
                rotated += 1;
            }
            Rotation::Reused { session_id, .. } => {
                assert_eq!(session_id, s.id);
                reused += 1;
            }
            Rotation::Revoked => {}
            other => panic!("unexpected outcome of a racing rotation: {other:?}"),
        }
    }

    assert_eq!(rotated, 1, "exactly one racer may rotate the token");
    if reused > 0 {
        assert_eq!(
            status_of(&*store, s.id).await,
            SessionStatus::Revoked,
            "a reuse revokes"
        );
    }
}

async fn case_session_by_web_token_finds_only_active_unexpired_web_sessions(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let (web, web_token) = login(&*store, ann.id, TokenKind::Web, at(0)).await;
    let (_, refresh_token) = login(&*store, ann.id, TokenKind::Refresh, at(0)).await;

    let found = store
        .session_by_web_token(&web_token, at(MINUTE))
        .await
        .unwrap();
    assert_eq!(found, Some(web.clone()));
    assert_eq!(
        store
            .session_by_web_token(&refresh_token, at(MINUTE))
            .await
            .unwrap(),
        None,
        "wrong kind"
    );
    assert_eq!(
        store
            .session_by_web_token(&token_hash(), at(MINUTE))
            .await
            .unwrap(),
        None,
        "unknown"
    );
    let late = at(TOKEN_LIFETIME + 1);
    assert_eq!(
        store.session_by_web_token(&web_token, late).await.unwrap(),
        None,
        "expired token"
    );

    assert!(
        store
            .revoke_session(web.id, at(2 * MINUTE), &audit("logout", at(2 * MINUTE)))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .session_by_web_token(&web_token, at(3 * MINUTE))
            .await
            .unwrap(),
        None,
        "revoked"
    );
}

async fn case_touch_session_records_activity_at_most_once_per_gap(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let (s, _) = login(&*store, ann.id, TokenKind::Web, at(0)).await;

    store
        .touch_session(s.id, at(30 * SECOND), MINUTE)
        .await
        .unwrap();
    assert_eq!(
        session(&*store, s.id).await.last_seen_at,
        at(0),
        "within the gap"
    );

    store
        .touch_session(s.id, at(MINUTE + 1), MINUTE)
        .await
        .unwrap();
    assert_eq!(session(&*store, s.id).await.last_seen_at, at(MINUTE + 1));
}

async fn case_active_sessions_lists_only_active_unexpired_sessions_of_the_account(
    store: Arc<dyn Store>,
) {
    let ann = seed(&*store, "ann").await;
    let bob = seed(&*store, "bob").await;
    let (long, _) = login(&*store, ann.id, TokenKind::Refresh, at(0)).await;
    let (revoked, _) = login(&*store, ann.id, TokenKind::Refresh, at(SECOND)).await;
    let mut short = login_commit(ann.id, TokenKind::Web, at(2 * SECOND));
    short.session.expires_at = at(HOUR);
    store.commit_login(&short).await.unwrap();
    login(&*store, bob.id, TokenKind::Refresh, at(0)).await;
    assert!(
        store
            .revoke_session(revoked.id, at(MINUTE), &audit("logout", at(MINUTE)))
            .await
            .unwrap()
    );

    let early = store.active_sessions(ann.id, at(2 * MINUTE)).await.unwrap();
    assert_eq!(
        ids(early.iter().map(|s| s.id)),
        ids([long.id, short.session.id])
    );
    assert!(
        early
            .iter()
            .all(|s| s.account_id == ann.id && s.status == SessionStatus::Active)
    );

    let later = store.active_sessions(ann.id, at(2 * HOUR)).await.unwrap();
    assert_eq!(
        later.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![long.id]
    );
}

async fn case_list_sessions_filters_by_account_and_pages(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let bob = seed(&*store, "bob").await;
    let mut anns = Vec::new();
    for i in 0..3 {
        anns.push(
            login(&*store, ann.id, TokenKind::Refresh, at(i * SECOND))
                .await
                .0
                .id,
        );
    }
    for i in 0..2 {
        login(&*store, bob.id, TokenKind::Web, at(i * SECOND)).await;
    }

    let everything = store.list_sessions(None, page(1, 10)).await.unwrap();
    assert_eq!((everything.total, everything.items.len()), (5, 5));

    let first = store.list_sessions(Some(ann.id), page(1, 2)).await.unwrap();
    let second = store.list_sessions(Some(ann.id), page(2, 2)).await.unwrap();
    assert_eq!((first.total, first.items.len()), (3, 2));
    assert_eq!((second.total, second.items.len()), (3, 1));
    let listed: Vec<Id> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|s| s.id)
        .collect();
    assert_eq!(ids(listed), ids(anns));
}

async fn case_revoked_since_lists_recent_revocations_oldest_first(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let (old, _) = login(&*store, ann.id, TokenKind::Refresh, at(0)).await;
    let (s2, _) = login(&*store, ann.id, TokenKind::Refresh, at(0)).await;
    let (s3, _) = login(&*store, ann.id, TokenKind::Web, at(0)).await;
    let (live, _) = login(&*store, ann.id, TokenKind::Refresh, at(0)).await;
    for (id, when) in [(old.id, SECOND), (s3.id, 3 * SECOND), (s2.id, 2 * SECOND)] {
        let audit_row = audit("logout", at(when));
        assert!(
            store
                .revoke_session(id, at(when), &audit_row)
                .await
                .unwrap()
        );
    }

    let recent = store.revoked_since(at(2 * SECOND)).await.unwrap();

    assert_eq!(
        recent,
        vec![(s2.id, at(2 * SECOND)), (s3.id, at(3 * SECOND))]
    );
    assert!(!recent.iter().any(|(id, _)| *id == live.id || *id == old.id));
    assert!(
        store
            .revoked_since(at(4 * SECOND))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn case_revoke_session_returns_true_then_false(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let (s, _) = login(&*store, ann.id, TokenKind::Refresh, at(0)).await;

    assert!(
        store
            .revoke_session(s.id, at(MINUTE), &audit("logout", at(MINUTE)))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(s.id, at(2 * MINUTE), &audit("logout", at(2 * MINUTE)))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(new_id(), at(2 * MINUTE), &audit("logout", at(2 * MINUTE)))
            .await
            .unwrap()
    );

    let stored = session(&*store, s.id).await;
    assert_eq!(
        (stored.status, stored.revoked_at),
        (SessionStatus::Revoked, Some(at(MINUTE)))
    );
}

async fn case_revoke_account_sessions_keeps_the_given_session(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let bob = seed(&*store, "bob").await;
    let (s1, _) = login(&*store, ann.id, TokenKind::Refresh, at(0)).await;
    let (s2, _) = login(&*store, ann.id, TokenKind::Web, at(SECOND)).await;
    let (s3, _) = login(&*store, ann.id, TokenKind::Refresh, at(2 * SECOND)).await;
    let (bob_session, _) = login(&*store, bob.id, TokenKind::Refresh, at(0)).await;
    let all = |t| audit("logout.all", t);

    let revoked = store
        .revoke_account_sessions(ann.id, Some(s2.id), at(MINUTE), &all(at(MINUTE)))
        .await
        .unwrap();
    assert_eq!(ids(revoked), ids([s1.id, s3.id]));
    assert_eq!(status_of(&*store, s2.id).await, SessionStatus::Active);
    assert_eq!(
        status_of(&*store, bob_session.id).await,
        SessionStatus::Active
    );

    let again = store
        .revoke_account_sessions(ann.id, Some(s2.id), at(2 * MINUTE), &all(at(2 * MINUTE)))
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");

    let rest = store
        .revoke_account_sessions(ann.id, None, at(3 * MINUTE), &all(at(3 * MINUTE)))
        .await
        .unwrap();
    assert_eq!(rest, vec![s2.id]);
    assert_eq!(
        status_of(&*store, bob_session.id).await,
        SessionStatus::Active
    );
}

async fn case_count_sessions_counts_every_session(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let bob = seed(&*store, "bob").await;
    assert_eq!(store.count_sessions().await.unwrap(), 0);

    login(&*store, ann.id, TokenKind::Refresh, at(0)).await;
    login(&*store, ann.id, TokenKind::Web, at(SECOND)).await;
    login(&*store, bob.id, TokenKind::Refresh, at(SECOND)).await;

    assert_eq!(store.count_sessions().await.unwrap(), 3);
}

async fn case_session_by_refresh_token_finds_the_session_whatever_the_token_state(
    store: Arc<dyn Store>,
) {
    let ann = seed(&*store, "ann").await;
    let (s, first) = login(&*store, ann.id, TokenKind::Refresh, at(0)).await;
    let (_, web) = login(&*store, ann.id, TokenKind::Web, at(0)).await;

    let found = store.session_by_refresh_token(&first).await.unwrap();
    assert_eq!(found, Some(s.clone()));
    assert_eq!(
        store.session_by_refresh_token(&web).await.unwrap(),
        None,
        "a web token is not a refresh token"
    );
    assert_eq!(
        store.session_by_refresh_token(&token_hash()).await.unwrap(),
        None
    );

    let next = fresh_token(at(MINUTE));
    let rotated = store
        .rotate_refresh(&first, &next, policy(at(MINUTE)))
        .await
        .unwrap();
    assert!(matches!(rotated, Rotation::Rotated(_)), "{rotated:?}");
    let by_spent = store.session_by_refresh_token(&first).await.unwrap();
    let by_next = store.session_by_refresh_token(&next.hash).await.unwrap();
    assert_eq!(by_spent.as_ref().map(|x| x.id), Some(s.id), "spent token");
    assert_eq!(by_next.map(|x| x.id), Some(s.id));

    store
        .revoke_session(s.id, at(2 * MINUTE), &audit("logout", at(2 * MINUTE)))
        .await
        .unwrap();
    let revoked = store
        .session_by_refresh_token(&next.hash)
        .await
        .unwrap()
        .expect("a revoked session is still found");
    assert_eq!(
        (revoked.status, revoked.revoked_at),
        (SessionStatus::Revoked, Some(at(2 * MINUTE)))
    );
    assert_eq!(
        store.session_by_refresh_token(&first).await.unwrap(),
        Some(revoked),
        "reading changes nothing"
    );
}

// ---------------------------------------------------------------------------------------
// Signing keys
// ---------------------------------------------------------------------------------------

async fn case_reseal_signing_key_replaces_only_the_value_it_was_given(store: Arc<dyn Store>) {
    let key = signing_key("k1", at(0));
    store.insert_first_signing_key(&key).await.unwrap();

    let sealed = b"GHK1-sealed-bytes".to_vec();
    assert!(
        store
            .reseal_signing_key("k1", &key.private_key, &sealed)
            .await
            .unwrap()
    );
    // A second instance racing with the same old value changes nothing.
    assert!(
        !store
            .reseal_signing_key("k1", &key.private_key, b"other")
            .await
            .unwrap()
    );
    assert!(
        !store
            .reseal_signing_key("nope", &sealed, b"other")
            .await
            .unwrap()
    );

    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].private_key, sealed);
    assert_eq!(
        (keys[0].public_key.clone(), keys[0].retired_at),
        (key.public_key, None)
    );
}

async fn case_insert_first_signing_key_twice_keeps_the_first(store: Arc<dyn Store>) {
    let first = signing_key("k1", at(0));
    store.insert_first_signing_key(&first).await.unwrap();
    store
        .insert_first_signing_key(&signing_key("k2", at(SECOND)))
        .await
        .unwrap();

    let keys = store.signing_keys().await.unwrap();

    assert_eq!(keys.len(), 1, "{keys:?}");
    let k = &keys[0];
    assert_eq!((k.kid.as_str(), k.alg.as_str()), ("k1", "EdDSA"));
    assert_eq!(k.private_key, first.private_key);
    assert_eq!(k.public_key, first.public_key);
    assert_eq!((k.created_at, k.retired_at), (at(0), None));
}

async fn case_concurrent_first_signing_key_inserts_keep_one(store: Arc<dyn Store>) {
    const RACERS: usize = 8;
    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for i in 0..RACERS {
        let (store, start) = (store.clone(), start.clone());
        racers.spawn(async move {
            start.wait().await;
            store
                .insert_first_signing_key(&signing_key(&format!("k{i}"), at(0)))
                .await
        });
    }
    while let Some(joined) = racers.join_next().await {
        joined.expect("racer finished").expect("insert succeeded");
    }

    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
}

async fn case_insert_first_signing_key_after_a_rotation_adds_nothing(store: Arc<dyn Store>) {
    store
        .rotate_signing_key(&signing_key("rotated", at(0)), at(0))
        .await
        .unwrap();

    store
        .insert_first_signing_key(&signing_key("first", at(SECOND)))
        .await
        .unwrap();

    let keys = store.signing_keys().await.unwrap();
    let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(
        kids,
        vec!["rotated"],
        "a key already existed, so no first key may be added"
    );
}

async fn case_rotate_signing_key_retires_the_previous_key(store: Arc<dyn Store>) {
    store
        .insert_first_signing_key(&signing_key("k1", at(0)))
        .await
        .unwrap();
    store
        .rotate_signing_key(&signing_key("k2", at(DAY)), at(DAY))
        .await
        .unwrap();
    store
        .rotate_signing_key(&signing_key("k3", at(2 * DAY)), at(2 * DAY))
        .await
        .unwrap();

    let keys = store.signing_keys().await.unwrap();

    let retired = |kid: &str| keys.iter().find(|k| k.kid == kid).map(|k| k.retired_at);
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(retired("k1"), Some(Some(at(DAY))), "first retirement kept");
    assert_eq!(retired("k2"), Some(Some(at(2 * DAY))));
    assert_eq!(retired("k3"), Some(None));
    let k3 = keys.iter().find(|k| k.kid == "k3").expect("k3");
    assert_eq!(k3.private_key, signing_key("k3", at(0)).private_key);
}

// ---------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------

async fn case_put_setting_then_get_returns_the_latest_value(store: Arc<dyn Store>) {
    assert_eq!(store.setting("instance").await.unwrap(), None);

    let v1 = json!({"singleSession": true, "name": "Gatehouse"});
    store.put_setting("instance", &v1, at(0)).await.unwrap();
    assert_eq!(store.setting("instance").await.unwrap(), Some(v1));

    let v2 = json!({"singleSession": false});
    store
        .put_setting("instance", &v2, at(SECOND))
        .await
        .unwrap();
    assert_eq!(store.setting("instance").await.unwrap(), Some(v2));
    assert_eq!(store.setting("other").await.unwrap(), None);
}

async fn case_settings_round_trip_any_json_value(store: Arc<dyn Store>) {
    let values = [
        json!(null),
        json!(true),
        json!(42),
        json!(-1.5),
        json!("text with 'quotes' and \"doubles\" and ünïcödé"),
        json!([1, "two", {"three": [3]}]),
        json!({"nested": {"deep": [null, false]}}),
    ];
    for (i, value) in values.iter().enumerate() {
        let key = format!("key.{i}");
        store.put_setting(&key, value, at(0)).await.unwrap();
        assert_eq!(
            store.setting(&key).await.unwrap().as_ref(),
            Some(value),
            "{key}"
        );
    }
}

async fn case_setting_or_insert_keeps_the_first_value(store: Arc<dyn Store>) {
    let first = json!({"secret": "aaaa"});
    let second = json!({"secret": "bbbb"});

    assert_eq!(
        store
            .setting_or_insert("server.secret", &first, at(0))
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        store
            .setting_or_insert("server.secret", &second, at(SECOND))
            .await
            .unwrap(),
        first
    );
    assert_eq!(store.setting("server.secret").await.unwrap(), Some(first));

    let put = json!("put");
    store.put_setting("preset", &put, at(0)).await.unwrap();
    assert_eq!(
        store
            .setting_or_insert("preset", &json!("other"), at(SECOND))
            .await
            .unwrap(),
        put
    );
}

async fn case_concurrent_setting_or_insert_calls_agree(store: Arc<dyn Store>) {
    const RACERS: usize = 8;
    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for i in 0..RACERS {
        let (store, start) = (store.clone(), start.clone());
        racers.spawn(async move {
            start.wait().await;
            store
                .setting_or_insert("server.secret", &json!(i), at(0))
                .await
        });
    }
    let mut returned = BTreeSet::new();
    while let Some(joined) = racers.join_next().await {
        returned.insert(
            joined
                .expect("racer finished")
                .expect("setting_or_insert succeeded")
                .to_string(),
        );
    }

    assert_eq!(
        returned.len(),
        1,
        "every caller sees the same value: {returned:?}"
    );
    let stored = store
        .setting("server.secret")
        .await
        .unwrap()
        .expect("stored")
        .to_string();
    assert_eq!(returned.into_iter().next(), Some(stored));
}

// ---------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------

async fn case_append_audit_round_trips_every_field(store: Arc<dyn Store>) {
    let full = AuditEvent {
        id: new_id(),
        at: at(1234),
        actor_id: Some(new_id()),
        action: "login".into(),
        target_id: Some(new_id()),
        outcome: "failure".into(),
        reason: Some("INVALID_CREDENTIALS".into()),
        ip: Some("2001:db8::1".into()),
        user_agent: Some("Mozilla/5.0 (conformance)".into()),
        request_id: Some("req-42".into()),
        details: json!({"attempt": 3, "methods": ["pwd"], "note": "ünïcödé"}),
    };
    let bare = event("keys.rotate", "success", at(0));

    store
        .append_audit(&[full.clone(), bare.clone()])
        .await
        .unwrap();
    store.append_audit(&[]).await.unwrap();

    let listed = store
        .list_audit(&AuditFilter::default(), page(1, 10))
        .await
        .unwrap();
    assert_eq!(listed.total, 2);
    assert_eq!(listed.items, vec![full, bare]);
}

async fn case_list_audit_filters_by_account(store: Arc<dyn Store>) {
    let x = new_id();
    let as_actor = AuditEvent {
        actor_id: Some(x),
        ..event("session.revoke", "success", at(0))
    };
    let as_target = AuditEvent {
        target_id: Some(x),
        ..event("account.disable", "success", at(SECOND))
    };
    let other = AuditEvent {
        actor_id: Some(new_id()),
        target_id: Some(new_id()),
        ..event("account.disable", "success", at(2 * SECOND))
    };
    store
        .append_audit(&[as_actor.clone(), as_target.clone(), other])
        .await
        .unwrap();

    let filter = AuditFilter {
        account_id: Some(x),
        ..AuditFilter::default()
    };
    assert_eq!(
        audit_items(&*store, &filter).await,
        (ids([as_actor.id, as_target.id]), 2)
    );
}

async fn case_list_audit_filters_by_action(store: Arc<dyn Store>) {
    let l1 = event("login", "success", at(0));
    let l2 = event("login", "failure", at(SECOND));
    let other = event("logout", "success", at(2 * SECOND));
    store
        .append_audit(&[l1.clone(), l2.clone(), other])
        .await
        .unwrap();

    let filter = AuditFilter {
        action: Some("login".into()),
        ..AuditFilter::default()
    };
    assert_eq!(
        audit_items(&*store, &filter).await,
        (ids([l1.id, l2.id]), 2)
    );
    let none = AuditFilter {
        action: Some("log".into()),
        ..AuditFilter::default()
    };
    assert_eq!(
        audit_items(&*store, &none).await,
        (BTreeSet::new(), 0),
        "exact match only"
    );
}

async fn case_list_audit_filters_by_outcome(store: Arc<dyn Store>) {
    let ok = event("login", "success", at(0));
    let failed = event("login", "failure", at(SECOND));
    let failed_too = event("refresh.reuse", "failure", at(2 * SECOND));
    store
        .append_audit(&[ok.clone(), failed.clone(), failed_too.clone()])
        .await
        .unwrap();

    let filter = AuditFilter {
        outcome: Some("failure".into()),
        ..AuditFilter::default()
    };
    assert_eq!(
        audit_items(&*store, &filter).await,
        (ids([failed.id, failed_too.id]), 2)
    );
    let both = AuditFilter {
        action: Some("login".into()),
        outcome: Some("failure".into()),
        ..AuditFilter::default()
    };
    assert_eq!(audit_items(&*store, &both).await, (ids([failed.id]), 1));
}

async fn case_list_audit_filters_by_time_range(store: Arc<dyn Store>) {
    let events: Vec<AuditEvent> = (0..4)
        .map(|i| event("login", "success", at(i * SECOND)))
        .collect();
    store.append_audit(&events).await.unwrap();
    let id = |i: usize| events[i].id;

    let window = AuditFilter {
        from: Some(at(SECOND)),
        to: Some(at(2500)),
        ..AuditFilter::default()
    };
    assert_eq!(
        audit_items(&*store, &window).await,
        (ids([id(1), id(2)]), 2)
    );
    let since = AuditFilter {
        from: Some(at(2 * SECOND)),
        ..AuditFilter::default()
    };
    assert_eq!(audit_items(&*store, &since).await, (ids([id(2), id(3)]), 2));
    let until = AuditFilter {
        to: Some(at(1500)),
        ..AuditFilter::default()
    };
    assert_eq!(audit_items(&*store, &until).await, (ids([id(0), id(1)]), 2));
}

async fn case_list_audit_pages_newest_first(store: Arc<dyn Store>) {
    let events: Vec<AuditEvent> = (0..5)
        .map(|i| event("login", "success", at(i * SECOND)))
        .collect();
    store.append_audit(&events).await.unwrap();
    let id = |i: usize| events[i].id;

    let mut pages = Vec::new();
    for n in 1..=4 {
        let listed = store
            .list_audit(&AuditFilter::default(), page(n, 2))
            .await
            .unwrap();
        assert_eq!(listed.total, 5, "page {n}");
        pages.push(listed.items.iter().map(|e| e.id).collect::<Vec<_>>());
    }

    assert_eq!(
        pages,
        vec![vec![id(4), id(3)], vec![id(2), id(1)], vec![id(0)], vec![]]
    );
}

async fn case_prune_audit_deletes_only_older_events(store: Arc<dyn Store>) {
    let events: Vec<AuditEvent> = (0..4)
        .map(|i| event("login", "success", at(i * SECOND)))
        .collect();
    store.append_audit(&events).await.unwrap();
    let id = |i: usize| events[i].id;

    assert_eq!(store.prune_audit(at(2 * SECOND)).await.unwrap(), 2);
    assert_eq!(
        audit_items(&*store, &AuditFilter::default()).await,
        (ids([id(2), id(3)]), 2),
        "an event at the cut-off is kept"
    );
    assert_eq!(store.prune_audit(at(2 * SECOND)).await.unwrap(), 0);
    assert_eq!(store.prune_audit(at(0)).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------
// Second factors
// ---------------------------------------------------------------------------------------

fn recovery_hashes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{:064x}", i + 1)).collect()
}

async fn case_totp_goes_pending_then_active_and_steps_only_move_forward(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    assert!(store.totp(ann.id).await.unwrap().is_none());
    assert!(
        store
            .put_pending_totp(ann.id, "sealed-1", at(0))
            .await
            .unwrap()
    );
    assert!(
        store
            .put_pending_totp(ann.id, "sealed-2", at(1))
            .await
            .unwrap()
    );
    let pending = store.totp(ann.id).await.unwrap().unwrap();
    assert_eq!(
        (pending.secret.as_str(), pending.active),
        ("sealed-2", false)
    );
    assert!(
        !store.use_totp_step(ann.id, 5, at(2)).await.unwrap(),
        "pending secrets take no codes"
    );
    let audit_row = audit("mfa.totp.enroll", at(3));
    assert!(
        store
            .confirm_totp(ann.id, 100, &recovery_hashes(10), at(3), &audit_row)
            .await
            .unwrap()
    );
    assert!(
        !store
            .confirm_totp(ann.id, 101, &recovery_hashes(10), at(3), &audit("x", at(3)))
            .await
            .unwrap(),
        "nothing pending any more"
    );
    let active = store.totp(ann.id).await.unwrap().unwrap();
    assert_eq!((active.active, active.last_used_step), (true, Some(100)));
    assert!(
        !store
            .put_pending_totp(ann.id, "sealed-3", at(4))
            .await
            .unwrap(),
        "an active secret is never replaced by enrolment"
    );
    assert_eq!(
        store.totp(ann.id).await.unwrap().unwrap().secret,
        "sealed-2"
    );
    for (step, accepted) in [
        (100, false),
        (99, false),
        (101, true),
        (101, false),
        (103, true),
        (102, false),
    ] {
        assert_eq!(
            store.use_totp_step(ann.id, step, at(5)).await.unwrap(),
            accepted,
            "step {step}"
        );
    }
    assert_eq!(store.recovery_codes_left(ann.id).await.unwrap(), 10);
    let hashes = recovery_hashes(10);
    assert!(
        store
            .use_recovery_code(ann.id, &hashes[0], at(6))
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_recovery_code(ann.id, &hashes[0], at(6))
            .await
            .unwrap()
    );
    assert_eq!(store.recovery_codes_left(ann.id).await.unwrap(), 9);
    let bob = seed(&*store, "bob").await;
    assert!(
        !store
            .use_recovery_code(bob.id, &hashes[1], at(6))
            .await
            .unwrap(),
        "codes are per account"
    );
    store
        .replace_recovery_codes(
            ann.id,
            &["f".repeat(64)],
            at(7),
            &audit("mfa.recovery_codes.regenerate", at(7)),
        )
        .await
        .unwrap();
    assert_eq!(store.recovery_codes_left(ann.id).await.unwrap(), 1);
    assert!(
        !store
            .use_recovery_code(ann.id, &hashes[1], at(8))
            .await
            .unwrap(),
        "old codes are gone"
    );
    assert!(
        store
            .remove_mfa(ann.id, &audit("mfa.totp.disable", at(9)))
            .await
            .unwrap()
    );
    assert!(store.totp(ann.id).await.unwrap().is_none());
    assert_eq!(store.recovery_codes_left(ann.id).await.unwrap(), 0);
    assert!(
        !store
            .remove_mfa(ann.id, &audit("mfa.totp.disable", at(9)))
            .await
            .unwrap()
    );
    let (_, total) = audit_items(
        &*store,
        &AuditFilter {
            action: Some("mfa.totp.enroll".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(total, 1, "the enrolment's audit row is written with it");
}

async fn case_racing_uses_of_a_totp_step_or_recovery_code_have_one_winner(store: Arc<dyn Store>) {
    const RACERS: usize = 16;
    let ann = seed(&*store, "ann").await;
    assert!(
        store
            .put_pending_totp(ann.id, "sealed", at(0))
            .await
            .unwrap()
    );
    let hashes = recovery_hashes(10);
    assert!(
        store
            .confirm_totp(ann.id, 10, &hashes, at(0), &audit("e", at(0)))
            .await
            .unwrap()
    );
    for kind in ["totp", "recovery"] {
        let start = Arc::new(Barrier::new(RACERS));
        let mut racers = JoinSet::new();
        for _ in 0..RACERS {
            let (store, start, hash) = (store.clone(), start.clone(), hashes[0].clone());
            racers.spawn(async move {
                start.wait().await;
                if kind == "totp" {
                    store.use_totp_step(ann.id, 11, at(MINUTE)).await
                } else {
                    store.use_recovery_code(ann.id, &hash, at(MINUTE)).await
                }
            });
        }
        let mut winners = 0;
        while let Some(joined) = racers.join_next().await {
            if joined.expect("racer finished").expect("use succeeded") {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "exactly one racing {kind} use may win");
    }
}

async fn case_trusted_devices_match_their_account_and_go_with_password_or_mfa(
    store: Arc<dyn Store>,
) {
    let ann = seed(&*store, "ann").await;
    let bob = seed(&*store, "bob").await;
    let device = |account_id: Id, expires: Timestamp| TrustedDevice {
        id: new_id(),
        account_id,
        ip: Some("192.0.2.1".into()),
        user_agent: Some("test".into()),
        created_at: at(0),
        last_used_at: at(0),
        expires_at: expires,
    };
    let (h1, h2, h3) = (token_hash(), token_hash(), token_hash());
    let d1 = device(ann.id, at(DAY));
    store
        .add_trusted_device(&d1, &h1, &audit("mfa.device.trust", at(0)))
        .await
        .unwrap();
    store
        .add_trusted_device(
            &device(ann.id, at(MINUTE)),
            &h2,
            &audit("mfa.device.trust", at(0)),
        )
        .await
        .unwrap();
    assert!(
        store
            .use_trusted_device(ann.id, &h1, at(HOUR))
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_trusted_device(bob.id, &h1, at(HOUR))
            .await
            .unwrap(),
        "another account's device"
    );
    assert!(
        !store
            .use_trusted_device(ann.id, &h2, at(HOUR))
            .await
            .unwrap(),
        "expired"
    );
    assert!(
        !store
            .use_trusted_device(ann.id, &token_hash(), at(HOUR))
            .await
            .unwrap()
    );
    let live = store.trusted_devices(ann.id, at(HOUR)).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].id, live[0].last_used_at), (d1.id, at(HOUR)));
    assert_eq!(
        store
            .revoke_trusted_devices(bob.id, Some(d1.id), &audit("r", at(HOUR)))
            .await
            .unwrap(),
        0
    );
    store
        .change_password(
            ann.id,
            NEW_HASH,
            None,
            at(HOUR),
            &audit("password.change", at(HOUR)),
        )
        .await
        .unwrap();
    assert!(
        store
            .trusted_devices(ann.id, at(HOUR))
            .await
            .unwrap()
            .is_empty(),
        "a new password ends trust"
    );
    let d3 = device(ann.id, at(DAY));
    store
        .add_trusted_device(&d3, &h3, &audit("mfa.device.trust", at(0)))
        .await
        .unwrap();
    assert_eq!(
        store
            .revoke_trusted_devices(ann.id, Some(d3.id), &audit("r", at(HOUR)))
            .await
            .unwrap(),
        1
    );
    assert!(
        !store
            .use_trusted_device(ann.id, &h3, at(HOUR))
            .await
            .unwrap()
    );
    store
        .add_trusted_device(&device(ann.id, at(DAY)), &token_hash(), &audit("t", at(0)))
        .await
        .unwrap();
    store
        .remove_mfa(ann.id, &audit("admin.user.reset_mfa", at(HOUR)))
        .await
        .unwrap();
    assert!(
        store
            .trusted_devices(ann.id, at(HOUR))
            .await
            .unwrap()
            .is_empty(),
        "a reset ends trust"
    );
}

// ---------------------------------------------------------------------------------------
// Tenancy
// ---------------------------------------------------------------------------------------

fn role(code: &str, workspace_id: Option<Id>, permissions: &[&str]) -> Role {
    Role {
        id: new_id(),
        workspace_id,
        code: code.into(),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
        created_at: at(0),
        updated_at: at(0),
    }
}

async fn tenant(store: &dyn Store, slug: &str, codes: &[&str]) -> (Workspace, Vec<Branch>) {
    let w = Workspace {
        id: new_id(),
        slug: slug.into(),
        name: slug.into(),
        status: Status::Active,
        created_at: at(0),
        updated_at: at(0),
    };
    store
        .create_workspace(&w, &audit("ws", at(0)))
        .await
        .unwrap();
    let mut branches = Vec::new();
    for code in codes {
        let b = Branch {
            id: new_id(),
            workspace_id: w.id,
            code: code.to_string(),
            name: code.to_string(),
            status: Status::Active,
            created_at: at(0),
            updated_at: at(0),
        };
        store
            .create_branch(&b, &audit("branch", at(0)))
            .await
            .unwrap();
        branches.push(b);
    }
    (w, branches)
}

async fn case_role_codes_are_unique_per_scope_including_global(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let (w, _) = tenant(store, "acme", &[]).await;
    let seeded = store.role_for(None, "admin").await.unwrap().unwrap();
    assert_eq!(seeded.permissions, vec!["*".to_string()]);
    store
        .create_role(&role("ops", None, &["audit:read"]), &audit("r", at(0)))
        .await
        .unwrap();
    let again = store
        .create_role(&role("ops", None, &[]), &audit("r", at(0)))
        .await;
    assert!(
        matches!(again, Err(StoreError::Conflict)),
        "two global roles with one code: {again:?}"
    );
    let own = role("ops", Some(w.id), &["members:read"]);
    store.create_role(&own, &audit("r", at(0))).await.unwrap();
    let again = store
        .create_role(&role("ops", Some(w.id), &[]), &audit("r", at(0)))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    assert_eq!(
        store.role_for(Some(w.id), "ops").await.unwrap().unwrap().id,
        own.id,
        "the workspace's own role wins"
    );
    let global = store.role_for(None, "ops").await.unwrap().unwrap();
    assert_eq!(global.workspace_id, None);
    let listed = store.list_roles(None, page(1, 100)).await.unwrap();
    assert_eq!(listed.total, 4);
}

async fn case_members_carry_branches_and_roles(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let a = seed(store, "member").await;
    let (w, b) = tenant(store, "acme", &["n", "s"]).await;
    let user = store.role_for(Some(w.id), "user").await.unwrap().unwrap();
    let admin = store.role_for(Some(w.id), "admin").await.unwrap().unwrap();
    let m = Member {
        id: new_id(),
        account_id: a.id,
        workspace_id: w.id,
        status: Status::Active,
        branch_ids: vec![b[0].id, b[1].id],
        roles: vec!["user".into()],
        created_at: at(0),
        updated_at: at(0),
    };
    let new = NewMember {
        member: m.clone(),
        role_ids: vec![user.id],
    };
    store.create_member(&new, &audit("m", at(0))).await.unwrap();
    let again = store.create_member(&new, &audit("m", at(0))).await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    let got = store.member_of(a.id, w.id).await.unwrap().unwrap();
    assert_eq!(got.roles, vec!["user".to_string()]);
    assert_eq!(ids(got.branch_ids.clone()), ids([b[0].id, b[1].id]));
    let rows = store.memberships(a.id).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        store
            .grant_role(m.id, Some(b[1].id), admin.id, &audit("g", at(0)))
            .await
            .unwrap()
    );
    let in_s: Vec<String> = store
        .member_roles(m.id, Some(b[1].id))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.code)
        .collect();
    assert_eq!(in_s, vec!["admin".to_string(), "user".to_string()]);
    let in_n = store.member_roles(m.id, Some(b[0].id)).await.unwrap();
    assert_eq!(in_n.len(), 1, "branch roles stay in their branch");
    assert!(
        store
            .revoke_role(m.id, None, user.id, &audit("r", at(0)))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_role(m.id, None, user.id, &audit("r", at(0)))
            .await
            .unwrap()
    );
    let disabled = store
        .set_member_status(m.id, Status::Disabled, at(1), &audit("d", at(1)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(disabled.status, Status::Disabled);
    assert!(disabled.roles.is_empty());
}

async fn case_session_context_moves_the_session_and_rotates_refresh(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let a = seed(store, "ctx").await;
    let (w, b) = tenant(store, "acme", &["hq"]).await;
    let (s, old) = login(store, a.id, TokenKind::Refresh, at(0)).await;
    let new = fresh_token(at(SECOND));
    assert!(
        store
            .set_session_context(
                s.id,
                Some(w.id),
                Some(b[0].id),
                Some(&new),
                Some(&("old-jti".to_string(), at(15 * MINUTE))),
                at(SECOND)
            )
            .await
            .unwrap()
    );
    let moved = session(store, s.id).await;
    assert_eq!(
        (moved.workspace_id, moved.branch_id),
        (Some(w.id), Some(b[0].id))
    );
    let next = fresh_token(at(2 * SECOND));
    match store
        .rotate_refresh(&new.hash, &next, policy(at(2 * SECOND)))
        .await
        .unwrap()
    {
        Rotation::Rotated(s) => assert_eq!(s.branch_id, Some(b[0].id)),
        other => panic!("expected rotation, got {other:?}"),
    }
    let replay = store
        .rotate_refresh(&old, &fresh_token(at(3 * SECOND)), policy(at(3 * SECOND)))
        .await
        .unwrap();
    assert!(matches!(replay, Rotation::Reused { .. }), "{replay:?}");
    assert!(
        !store
            .set_session_context(
                s.id,
                None,
                None,
                None,
                Some(&("late-jti".to_string(), at(HOUR))),
                at(4 * SECOND)
            )
            .await
            .unwrap(),
        "a revoked session cannot move"
    );
    // The replaced token is denied until it expires; nothing is recorded for a session
    // that could not move.
    assert_eq!(
        store.denied_tokens(at(MINUTE)).await.unwrap(),
        vec![("old-jti".to_string(), at(15 * MINUTE))]
    );
    assert_eq!(store.denied_tokens(at(15 * MINUTE)).await.unwrap(), vec![]);
}

async fn actions(store: &dyn Store, action: &str) -> u64 {
    let filter = AuditFilter {
        action: Some(action.into()),
        ..AuditFilter::default()
    };
    audit_items(store, &filter).await.1
}

async fn case_workspaces_are_found_by_id_and_slug_listed_and_disabled(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let (beta, _) = tenant(store, "beta", &[]).await;
    let (alpha, _) = tenant(store, "alpha", &[]).await;
    let (gamma, _) = tenant(store, "gamma", &[]).await;

    assert_eq!(
        store.workspace_by_id(beta.id).await.unwrap(),
        Some(beta.clone())
    );
    assert_eq!(
        store.workspace_by_slug("alpha").await.unwrap(),
        Some(alpha.clone())
    );
    assert_eq!(store.workspace_by_id(new_id()).await.unwrap(), None);
    assert_eq!(store.workspace_by_slug("alp").await.unwrap(), None);
    let taken = Workspace {
        id: new_id(),
        ..alpha.clone()
    };
    let again = store.create_workspace(&taken, &audit("ws", at(0))).await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");

    let first = store.list_workspaces(page(1, 2)).await.unwrap();
    let second = store.list_workspaces(page(2, 2)).await.unwrap();
    assert_eq!((first.total, second.total), (3, 3));
    assert_eq!(first.items, vec![alpha.clone(), beta.clone()], "by slug");
    assert_eq!(second.items, vec![gamma]);

    let disabled = store
        .set_workspace_status(
            beta.id,
            Status::Disabled,
            at(MINUTE),
            &audit("ws.disable", at(MINUTE)),
        )
        .await
        .unwrap();
    let expected = Workspace {
        status: Status::Disabled,
        updated_at: at(MINUTE),
        ..beta.clone()
    };
    assert_eq!(disabled, Some(expected.clone()));
    assert_eq!(
        store.workspace_by_slug("beta").await.unwrap(),
        Some(expected)
    );
    assert_eq!(
        store.workspace_by_id(alpha.id).await.unwrap(),
        Some(alpha),
        "the others are untouched"
    );
    let missing = store
        .set_workspace_status(
            new_id(),
            Status::Disabled,
            at(MINUTE),
            &audit("ws.disable", at(MINUTE)),
        )
        .await
        .unwrap();
    assert_eq!(missing, None);
    assert_eq!(
        actions(store, "ws.disable").await,
        1,
        "audited only when something changed"
    );
}

async fn case_branches_are_found_by_id_and_code_listed_and_disabled(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let (w, b) = tenant(store, "acme", &["south", "north", "mid"]).await;
    let (other, ob) = tenant(store, "other", &["north"]).await;
    let [south, north, mid] = [b[0].clone(), b[1].clone(), b[2].clone()];

    assert_eq!(
        store.branch_by_id(south.id).await.unwrap(),
        Some(south.clone())
    );
    assert_eq!(store.branch_by_id(new_id()).await.unwrap(), None);
    assert_eq!(
        store.branch_by_code(w.id, "north").await.unwrap(),
        Some(north.clone())
    );
    assert_eq!(
        store.branch_by_code(other.id, "north").await.unwrap(),
        Some(ob[0].clone()),
        "codes are per workspace"
    );
    assert_eq!(store.branch_by_code(other.id, "mid").await.unwrap(), None);
    let taken = Branch {
        id: new_id(),
        ..mid.clone()
    };
    let again = store.create_branch(&taken, &audit("branch", at(0))).await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");

    let first = store.list_branches(w.id, page(1, 2)).await.unwrap();
    let second = store.list_branches(w.id, page(2, 2)).await.unwrap();
    assert_eq!((first.total, second.total), (3, 3));
    assert_eq!(first.items, vec![mid.clone(), north.clone()], "by code");
    assert_eq!(second.items, vec![south.clone()]);
    let empty = store.list_branches(new_id(), page(1, 10)).await.unwrap();
    assert_eq!((empty.items.len(), empty.total), (0, 0));

    let disabled = store
        .set_branch_status(
            north.id,
            Status::Disabled,
            at(MINUTE),
            &audit("branch.disable", at(MINUTE)),
        )
        .await
        .unwrap();
    let expected = Branch {
        status: Status::Disabled,
        updated_at: at(MINUTE),
        ..north.clone()
    };
    assert_eq!(disabled, Some(expected.clone()));
    assert_eq!(
        store.branch_by_code(w.id, "north").await.unwrap(),
        Some(expected)
    );
    assert_eq!(
        store.branch_by_id(ob[0].id).await.unwrap(),
        Some(ob[0].clone()),
        "the other workspace's branch is untouched"
    );
    let missing = store
        .set_branch_status(
            new_id(),
            Status::Active,
            at(MINUTE),
            &audit("branch.disable", at(MINUTE)),
        )
        .await
        .unwrap();
    assert_eq!(missing, None);
    assert_eq!(actions(store, "branch.disable").await, 1);
}

async fn case_members_are_found_by_id_and_listed_per_workspace(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let (w, b) = tenant(store, "acme", &["south", "north"]).await;
    let (other, _) = tenant(store, "other", &[]).await;
    let user = store.role_for(Some(w.id), "user").await.unwrap().unwrap();
    let admin = store.role_for(Some(w.id), "admin").await.unwrap().unwrap();
    let mut members = Vec::new();
    for (i, name) in ["ann", "bob", "cy"].into_iter().enumerate() {
        let account = seed(store, name).await;
        let created = at(i64::try_from(i).unwrap() * SECOND);
        let m = Member {
            id: new_id(),
            account_id: account.id,
            workspace_id: w.id,
            status: Status::Active,
            // Listed by branch code, whatever the order given.
            branch_ids: if i == 0 {
                vec![b[1].id, b[0].id]
            } else {
                Vec::new()
            },
            roles: Vec::new(),
            created_at: created,
            updated_at: created,
        };
        let role_ids = if i == 0 {
            vec![user.id, admin.id]
        } else {
            vec![user.id]
        };
        let new = NewMember {
            member: m.clone(),
            role_ids,
        };
        store
            .create_member(&new, &audit("m", created))
            .await
            .unwrap();
        members.push(m);
    }
    let elsewhere = Member {
        id: new_id(),
        account_id: members[0].account_id,
        workspace_id: other.id,
        status: Status::Active,
        branch_ids: Vec::new(),
        roles: Vec::new(),
        created_at: at(0),
        updated_at: at(0),
    };
    let new = NewMember {
        member: elsewhere.clone(),
        role_ids: Vec::new(),
    };
    store.create_member(&new, &audit("m", at(0))).await.unwrap();

    let ann = Member {
        branch_ids: vec![b[1].id, b[0].id],
        roles: vec!["admin".into(), "user".into()],
        ..members[0].clone()
    };
    let with_user = |m: &Member| Member {
        roles: vec!["user".into()],
        ..m.clone()
    };
    assert_eq!(
        store.member_by_id(members[0].id).await.unwrap(),
        Some(ann.clone())
    );
    assert_eq!(
        store.member_by_id(elsewhere.id).await.unwrap(),
        Some(elsewhere.clone())
    );
    assert_eq!(store.member_by_id(new_id()).await.unwrap(), None);

    let first = store.list_members(w.id, page(1, 2)).await.unwrap();
    let second = store.list_members(w.id, page(2, 2)).await.unwrap();
    assert_eq!((first.total, second.total), (3, 3));
    assert_eq!(
        first.items,
        vec![ann, with_user(&members[1])],
        "oldest first, completed with branches and roles"
    );
    assert_eq!(second.items, vec![with_user(&members[2])]);
    let theirs = store.list_members(other.id, page(1, 10)).await.unwrap();
    assert_eq!((theirs.items, theirs.total), (vec![elsewhere], 1));
}

fn invitation(
    w: &Workspace,
    account: Id,
    branches: &[Id],
    roles: &[&str],
    created: Timestamp,
) -> Invitation {
    Invitation {
        id: new_id(),
        workspace_id: w.id,
        account_id: account,
        invited_by: None,
        branch_ids: branches.to_vec(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        status: InvitationStatus::Pending,
        created_at: created,
        expires_at: created.plus(ms(7 * DAY)),
        decided_at: None,
    }
}

async fn case_invitations_are_one_pending_per_account_and_workspace(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let ann = seed(store, "ann").await;
    let bob = seed(store, "bob").await;
    let (w, b) = tenant(store, "acme", &["n"]).await;
    let (other, _) = tenant(store, "other", &[]).await;
    let first = invitation(&w, ann.id, &[b[0].id], &["user"], at(0));
    store
        .create_invitation(&first, &audit("inv", at(0)))
        .await
        .unwrap();
    assert_eq!(
        store.invitation_by_id(first.id).await.unwrap(),
        Some(first.clone()),
        "round-trips with branches and role codes"
    );
    let again = store
        .create_invitation(
            &invitation(&w, ann.id, &[], &[], at(HOUR)),
            &audit("inv", at(HOUR)),
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    assert_eq!(
        actions(store, "inv").await,
        1,
        "no audit row for the refused one"
    );
    // Other accounts and other workspaces are independent.
    let to_bob = invitation(&w, bob.id, &[], &[], at(SECOND));
    store
        .create_invitation(&to_bob, &audit("inv", at(SECOND)))
        .await
        .unwrap();
    let elsewhere = invitation(&other, ann.id, &[], &[], at(2 * SECOND));
    store
        .create_invitation(&elsewhere, &audit("inv", at(2 * SECOND)))
        .await
        .unwrap();
    let listed = store.list_invitations(w.id, page(1, 1)).await.unwrap();
    assert_eq!(
        (listed.total, listed.items),
        (2, vec![to_bob.clone()]),
        "newest first"
    );
    let pending = store.pending_invitations(ann.id, at(HOUR)).await.unwrap();
    assert_eq!(pending, vec![elsewhere.clone(), first.clone()]);
    // Once the first has expired, a new one may be made; the old row reads as expired.
    let later = at(8 * DAY);
    assert_eq!(
        store.pending_invitations(ann.id, later).await.unwrap(),
        vec![]
    );
    let renewed = invitation(&w, ann.id, &[], &[], later);
    store
        .create_invitation(&renewed, &audit("inv", later))
        .await
        .unwrap();
    let old = store.invitation_by_id(first.id).await.unwrap().unwrap();
    assert_eq!(old.status, InvitationStatus::Expired);
    assert_eq!(
        store.pending_invitations(ann.id, later).await.unwrap(),
        vec![renewed]
    );
}

async fn case_accepting_an_invitation_creates_the_member_atomically(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let ann = seed(store, "ann").await;
    let (w, b) = tenant(store, "acme", &["n", "s"]).await;
    let user = store.role_for(Some(w.id), "user").await.unwrap().unwrap();
    let inv = invitation(&w, ann.id, &[b[0].id], &["user"], at(0));
    store
        .create_invitation(&inv, &audit("inv", at(0)))
        .await
        .unwrap();
    let member = |created: Timestamp| NewMember {
        member: Member {
            id: new_id(),
            account_id: ann.id,
            workspace_id: w.id,
            status: Status::Active,
            branch_ids: vec![b[0].id],
            roles: vec!["user".into()],
            created_at: created,
            updated_at: created,
        },
        role_ids: vec![user.id],
    };
    // A membership made meanwhile (by an instance admin) makes accepting a conflict that
    // changes nothing: the invitation stays pending, no audit row.
    let direct = member(at(SECOND));
    store
        .create_member(&direct, &audit("m", at(SECOND)))
        .await
        .unwrap();
    let clash = member(at(MINUTE));
    let r = store
        .decide_invitation(
            inv.id,
            InvitationStatus::Accepted,
            at(MINUTE),
            Some(&clash),
            &audit("accept", at(MINUTE)),
        )
        .await;
    assert!(matches!(r, Err(StoreError::Conflict)), "{r:?}");
    assert_eq!(
        store
            .invitation_by_id(inv.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        InvitationStatus::Pending
    );
    assert_eq!(store.member_by_id(clash.member.id).await.unwrap(), None);
    assert_eq!(actions(store, "accept").await, 0);

    let bob = seed(store, "bob").await;
    let to_bob = invitation(&w, bob.id, &[b[1].id], &["user"], at(0));
    store
        .create_invitation(&to_bob, &audit("inv", at(0)))
        .await
        .unwrap();
    let theirs = NewMember {
        member: Member {
            account_id: bob.id,
            branch_ids: vec![b[1].id],
            ..member(at(HOUR)).member
        },
        role_ids: vec![user.id],
    };
    let done = store
        .decide_invitation(
            to_bob.id,
            InvitationStatus::Accepted,
            at(HOUR),
            Some(&theirs),
            &audit("accept", at(HOUR)),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, InvitationStatus::Accepted);
    assert_eq!(done.decided_at, Some(at(HOUR)));
    assert_eq!(
        store.member_by_id(theirs.member.id).await.unwrap(),
        Some(theirs.member.clone())
    );
    assert_eq!(actions(store, "accept").await, 1);
    assert_eq!(
        store.pending_invitations(bob.id, at(HOUR)).await.unwrap(),
        vec![]
    );
}

async fn case_an_invitation_is_decided_once_and_never_after_expiry(store: Arc<dyn Store>) {
    let store = store.as_ref();
    let ann = seed(store, "ann").await;
    let (w, _) = tenant(store, "acme", &[]).await;
    let inv = invitation(&w, ann.id, &[], &[], at(0));
    store
        .create_invitation(&inv, &audit("inv", at(0)))
        .await
        .unwrap();
    let declined = store
        .decide_invitation(
            inv.id,
            InvitationStatus::Declined,
            at(MINUTE),
            None,
            &audit("decline", at(MINUTE)),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(declined.status, InvitationStatus::Declined);
    for status in [
        InvitationStatus::Accepted,
        InvitationStatus::Revoked,
        InvitationStatus::Declined,
    ] {
        let again = store
            .decide_invitation(inv.id, status, at(HOUR), None, &audit("again", at(HOUR)))
            .await
            .unwrap();
        assert_eq!(again, None, "{status:?} after a decline");
    }
    assert_eq!(actions(store, "again").await, 0);
    let late = invitation(&w, ann.id, &[], &[], at(DAY));
    store
        .create_invitation(&late, &audit("inv", at(DAY)))
        .await
        .unwrap();
    let expired = store
        .decide_invitation(
            late.id,
            InvitationStatus::Revoked,
            at(8 * DAY),
            None,
            &audit("again", at(8 * DAY)),
        )
        .await
        .unwrap();
    assert_eq!(expired, None, "past expiry nothing can be decided");
    assert_eq!(
        store
            .decide_invitation(
                new_id(),
                InvitationStatus::Declined,
                at(DAY),
                None,
                &audit("again", at(DAY))
            )
            .await
            .unwrap(),
        None
    );
}

// ---------------------------------------------------------------------------------------
// The store handle
// ---------------------------------------------------------------------------------------

async fn case_ping_answers_on_an_open_store(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    // Still answers after writes went through the writer.
    seed(&*store, "ann").await;
    store.ping().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Personal access tokens
// ---------------------------------------------------------------------------------------

fn pat(account_id: Id, name: &str, created: Timestamp) -> PersonalAccessToken {
    PersonalAccessToken {
        id: new_id(),
        account_id,
        name: name.into(),
        scopes: Some(vec!["users:read".into()]),
        workspace_id: None,
        branch_id: Some(new_id()),
        created_at: created,
        expires_at: Some(created.plus(ms(90 * DAY))),
        last_used_at: None,
        last_used_ip: None,
        revoked_at: None,
    }
}

async fn case_personal_access_tokens_round_trip_by_hash(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let bob = seed(&*store, "bob").await;
    let first = pat(ann.id, "first", at(0));
    let never = PersonalAccessToken {
        scopes: None,
        branch_id: None,
        expires_at: None,
        ..pat(ann.id, "never", at(SECOND))
    };
    let theirs = pat(bob.id, "bob's", at(0));
    let (h1, h2, h3) = (token_hash(), token_hash(), token_hash());
    store
        .create_pat(&first, &h1, &audit("pat.create", at(0)))
        .await
        .unwrap();
    store
        .create_pat(&never, &h2, &audit("pat.create", at(SECOND)))
        .await
        .unwrap();
    store
        .create_pat(&theirs, &h3, &audit("pat.create", at(0)))
        .await
        .unwrap();
    assert_eq!(store.pat_by_hash(&h1).await.unwrap(), Some(first.clone()));
    assert_eq!(store.pat_by_hash(&h2).await.unwrap(), Some(never.clone()));
    assert_eq!(store.pat_by_hash(&token_hash()).await.unwrap(), None);
    assert_eq!(
        store.list_pats(ann.id).await.unwrap(),
        vec![never, first],
        "newest first, only the owner's"
    );
    let filter = AuditFilter {
        action: Some("pat.create".into()),
        ..AuditFilter::default()
    };
    let audited = store.list_audit(&filter, page(1, 10)).await.unwrap();
    assert_eq!(audited.total, 3, "each create wrote its audit row");
}

async fn case_personal_access_token_hashes_are_unique(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let hash = token_hash();
    store
        .create_pat(&pat(ann.id, "a", at(0)), &hash, &audit("pat.create", at(0)))
        .await
        .unwrap();
    let again = store
        .create_pat(&pat(ann.id, "b", at(0)), &hash, &audit("pat.create", at(0)))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    assert_eq!(store.list_pats(ann.id).await.unwrap().len(), 1);
}

async fn case_personal_access_token_use_is_recorded_at_most_once_per_gap(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let t = pat(ann.id, "ci", at(0));
    let hash = token_hash();
    store
        .create_pat(&t, &hash, &audit("pat.create", at(0)))
        .await
        .unwrap();
    let touch = |now: Timestamp, ip: &'static str| {
        let store = store.clone();
        async move { store.touch_pat(t.id, now, Some(ip), MINUTE).await.unwrap() }
    };
    assert!(
        touch(at(SECOND), "192.0.2.1").await,
        "the first use is recorded"
    );
    assert!(
        !touch(at(30 * SECOND), "192.0.2.2").await,
        "within the gap: no write"
    );
    let row = store.pat_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(row.last_used_at, Some(at(SECOND)));
    assert_eq!(row.last_used_ip.as_deref(), Some("192.0.2.1"));
    assert!(
        touch(at(SECOND + MINUTE), "192.0.2.3").await,
        "after the gap"
    );
    let row = store.pat_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(row.last_used_at, Some(at(SECOND + MINUTE)));
    assert_eq!(row.last_used_ip.as_deref(), Some("192.0.2.3"));
}

async fn case_revoking_a_personal_access_token_keeps_it_recognisable(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let bob = seed(&*store, "bob").await;
    let t = pat(ann.id, "ci", at(0));
    let hash = token_hash();
    store
        .create_pat(&t, &hash, &audit("pat.create", at(0)))
        .await
        .unwrap();
    assert_eq!(
        store
            .revoke_pat(bob.id, t.id, at(SECOND), &audit("pat.delete", at(SECOND)))
            .await
            .unwrap(),
        None,
        "not someone else's"
    );
    assert_eq!(
        store
            .revoke_pat(ann.id, t.id, at(SECOND), &audit("pat.delete", at(SECOND)))
            .await
            .unwrap(),
        Some(hash.clone()),
        "the hash comes back, for caches to forget"
    );
    assert!(
        store
            .revoke_pat(
                ann.id,
                t.id,
                at(2 * SECOND),
                &audit("pat.delete", at(2 * SECOND))
            )
            .await
            .unwrap()
            .is_none(),
        "only once"
    );
    let row = store.pat_by_hash(&hash).await.unwrap().unwrap();
    assert_eq!(row.revoked_at, Some(at(SECOND)));
    assert!(store.list_pats(ann.id).await.unwrap().is_empty());
    let filter = AuditFilter {
        action: Some("pat.delete".into()),
        ..AuditFilter::default()
    };
    let audited = store.list_audit(&filter, page(1, 10)).await.unwrap();
    assert_eq!(
        audited.total, 1,
        "only the revocation that happened is audited"
    );
}

// ---------------------------------------------------------------------------------------
// Service accounts and API keys
// ---------------------------------------------------------------------------------------

async fn seed_service(store: &dyn Store, name: &str) -> Account {
    let mut a = account(&format!("{name}@service.invalid"), Some(name), at(0));
    a.kind = AccountKind::Service;
    create(store, a, None).await
}

fn key(account_id: Id, access_key: &str, created: Timestamp) -> ApiKey {
    ApiKey {
        id: new_id(),
        account_id,
        name: "deploy".into(),
        access_key: access_key.into(),
        scopes: Some(vec!["users:read".into()]),
        status: Status::Active,
        created_at: created,
        expires_at: None,
        last_used_at: None,
        last_used_ip: None,
        rotated_at: None,
    }
}

async fn case_api_keys_round_trip_rotate_and_change_status(store: Arc<dyn Store>) {
    let bot = seed_service(&*store, "bot").await;
    assert_eq!(
        store.account_by_id(bot.id).await.unwrap().unwrap().kind,
        AccountKind::Service
    );
    let k = key(bot.id, "gatehouse_ak_one", at(0));
    let (h1, h2) = (token_hash(), token_hash());
    store
        .create_api_key(&k, &h1, &audit("api_key.create", at(0)))
        .await
        .unwrap();
    let taken = store
        .create_api_key(
            &key(bot.id, "gatehouse_ak_one", at(0)),
            &h2,
            &audit("api_key.create", at(0)),
        )
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict)), "{taken:?}");
    assert_eq!(
        store
            .api_key_by_access_key("gatehouse_ak_one")
            .await
            .unwrap(),
        Some((k.clone(), h1.clone()))
    );
    assert_eq!(store.api_key_by_access_key("nope").await.unwrap(), None);

    let rotated = store
        .rotate_api_key(k.id, &h2, at(SECOND), &audit("api_key.rotate", at(SECOND)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.rotated_at, Some(at(SECOND)));
    let (_, hash) = store
        .api_key_by_access_key("gatehouse_ak_one")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hash, h2, "the old secret's hash is gone");

    let disabled = store
        .set_api_key_status(k.id, Status::Disabled, &audit("api_key.disable", at(0)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(disabled.status, Status::Disabled);
    assert!(
        store
            .set_api_key_status(new_id(), Status::Disabled, &audit("x", at(0)))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .touch_api_key(k.id, at(MINUTE), Some("192.0.2.9"), MINUTE)
            .await
            .unwrap()
    );
    assert!(
        !store
            .touch_api_key(k.id, at(MINUTE + SECOND), None, MINUTE)
            .await
            .unwrap()
    );
    let listed = store
        .list_api_keys(Some(bot.id), page(1, 10))
        .await
        .unwrap();
    assert_eq!(listed.total, 1);
    assert_eq!(listed.items[0].last_used_ip.as_deref(), Some("192.0.2.9"));
    assert_eq!(
        store
            .list_api_keys(Some(new_id()), page(1, 10))
            .await
            .unwrap()
            .total,
        0
    );
    assert!(
        store
            .delete_api_key(k.id, &audit("api_key.delete", at(0)))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_api_key(k.id, &audit("api_key.delete", at(0)))
            .await
            .unwrap()
    );
    assert_eq!(store.api_key_by_id(k.id).await.unwrap(), None);
}

async fn case_deleting_a_service_account_takes_its_keys_and_spares_people(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let bot = seed_service(&*store, "bot").await;
    let k = key(bot.id, "gatehouse_ak_bot", at(0));
    store
        .create_api_key(&k, &token_hash(), &audit("api_key.create", at(0)))
        .await
        .unwrap();
    let listed = store.list_service_accounts(page(1, 10)).await.unwrap();
    assert_eq!((listed.total, listed.items[0].id), (1, bot.id));
    assert!(
        !store
            .delete_service_account(ann.id, &audit("x", at(0)))
            .await
            .unwrap(),
        "people are not deleted this way"
    );
    assert!(store.account_by_id(ann.id).await.unwrap().is_some());
    assert!(
        store
            .delete_service_account(bot.id, &audit("admin.service_account.delete", at(0)))
            .await
            .unwrap()
    );
    assert_eq!(store.account_by_id(bot.id).await.unwrap(), None);
    assert_eq!(store.api_key_by_id(k.id).await.unwrap(), None);
    assert_eq!(
        store
            .list_service_accounts(page(1, 10))
            .await
            .unwrap()
            .total,
        0
    );
}

// ---------------------------------------------------------------------------------------
// SSO: external identities and stored providers.
// ---------------------------------------------------------------------------------------

fn identity(provider: &str, subject: &str, account_id: Id, at: Timestamp) -> ExternalIdentity {
    ExternalIdentity {
        id: new_id(),
        provider: provider.into(),
        subject: subject.into(),
        account_id,
        email: Some(format!("{subject}@upstream.test")),
        created_account: false,
        created_at: at,
        last_used_at: None,
    }
}

async fn audit_count(store: &dyn Store, action: &str) -> u64 {
    let filter = AuditFilter {
        action: Some(action.into()),
        ..AuditFilter::default()
    };
    store.list_audit(&filter, page(1, 50)).await.unwrap().total
}

async fn case_sso_identity_links_resolves_and_is_unique(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let bob = seed(&*store, "bob").await;
    let linked = identity("corp", "sub-1", ann.id, at(SECOND));
    store
        .link_identity(&linked, &audit("sso.link", at(SECOND)))
        .await
        .unwrap();
    assert_eq!(
        store.identity_by_subject("corp", "sub-1").await.unwrap(),
        Some(linked.clone())
    );
    // Resolution is by provider and subject together.
    assert_eq!(
        store.identity_by_subject("other", "sub-1").await.unwrap(),
        None
    );
    assert_eq!(
        store.identity_by_subject("corp", "sub-2").await.unwrap(),
        None
    );
    // One upstream identity belongs to one account.
    let again = identity("corp", "sub-1", bob.id, at(2 * SECOND));
    let err = store
        .link_identity(&again, &audit("sso.link", at(2 * SECOND)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(audit_count(&*store, "sso.link").await, 1);
    let second = identity("other", "sub-1", ann.id, at(3 * SECOND));
    store
        .link_identity(&second, &audit("sso.link", at(3 * SECOND)))
        .await
        .unwrap();
    let listed = store.identities_of(ann.id).await.unwrap();
    assert_eq!(listed, vec![linked.clone(), second]);
    assert!(store.identities_of(bob.id).await.unwrap().is_empty());
    store
        .touch_identity(linked.id, Some("new@upstream.test"), at(MINUTE))
        .await
        .unwrap();
    let touched = store
        .identity_by_subject("corp", "sub-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(touched.last_used_at, Some(at(MINUTE)));
    assert_eq!(touched.email.as_deref(), Some("new@upstream.test"));
    store
        .touch_identity(linked.id, None, at(HOUR))
        .await
        .unwrap();
    let kept = store
        .identity_by_subject("corp", "sub-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.email.as_deref(), Some("new@upstream.test"));
    assert_eq!(kept.last_used_at, Some(at(HOUR)));
}

async fn case_sso_register_with_identity_is_all_or_nothing(store: Arc<dyn Store>) {
    let first = account("new@example.com", None, at(0));
    let mut link = identity("corp", "sub-new", first.id, at(0));
    link.created_account = true;
    let new = NewAccount {
        account: first.clone(),
        password_hash: None,
        email_verified: true,
    };
    store
        .register_with_identity(&new, &link, &audit("sso.register", at(0)))
        .await
        .unwrap();
    let stored = store
        .account_by_email("new@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.id, first.id);
    assert_eq!(store.password_hash(first.id).await.unwrap(), None);
    let found = store
        .identity_by_subject("corp", "sub-new")
        .await
        .unwrap()
        .unwrap();
    assert!(found.created_account);
    // The e-mail is taken: neither the account nor the identity is written.
    let dup = account("new@example.com", None, at(SECOND));
    let other = identity("corp", "sub-other", dup.id, at(SECOND));
    let err = store
        .register_with_identity(
            &NewAccount {
                account: dup.clone(),
                password_hash: None,
                email_verified: true,
            },
            &other,
            &audit("sso.register", at(SECOND)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(
        store
            .identity_by_subject("corp", "sub-other")
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.account_by_id(dup.id).await.unwrap(), None);
    assert_eq!(audit_count(&*store, "sso.register").await, 1);
    // The subject is taken: the new account is not written either.
    let third = account("third@example.com", None, at(2 * SECOND));
    let taken = identity("corp", "sub-new", third.id, at(2 * SECOND));
    let err = store
        .register_with_identity(
            &NewAccount {
                account: third.clone(),
                password_hash: None,
                email_verified: true,
            },
            &taken,
            &audit("sso.register", at(2 * SECOND)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(store.account_by_id(third.id).await.unwrap(), None);
}

async fn case_sso_unlink_refuses_the_last_way_to_sign_in(store: Arc<dyn Store>) {
    // No password, one identity: unlinking it would lock the account out.
    let only = account("only@example.com", None, at(0));
    let first = identity("corp", "only-1", only.id, at(0));
    store
        .register_with_identity(
            &NewAccount {
                account: only.clone(),
                password_hash: None,
                email_verified: true,
            },
            &first,
            &audit("sso.register", at(0)),
        )
        .await
        .unwrap();
    let unlink = |id| {
        let store = store.clone();
        async move {
            store
                .unlink_identity(only.id, id, &audit("sso.unlink", at(SECOND)))
                .await
                .unwrap()
        }
    };
    assert_eq!(unlink(first.id).await, Unlink::LastWay);
    assert_eq!(unlink(new_id()).await, Unlink::NotFound);
    // With a second identity, either may go, but not both.
    let second = identity("other", "only-2", only.id, at(SECOND));
    store
        .link_identity(&second, &audit("sso.link", at(SECOND)))
        .await
        .unwrap();
    assert_eq!(unlink(first.id).await, Unlink::Removed);
    assert_eq!(unlink(second.id).await, Unlink::LastWay);
    assert_eq!(store.identities_of(only.id).await.unwrap(), vec![second]);
    assert_eq!(audit_count(&*store, "sso.unlink").await, 1);
    // An account with a password may drop its only identity; another's identity is not found.
    let ann = seed(&*store, "ann").await;
    let hers = identity("corp", "ann-1", ann.id, at(0));
    store
        .link_identity(&hers, &audit("sso.link", at(0)))
        .await
        .unwrap();
    assert_eq!(unlink(hers.id).await, Unlink::NotFound);
    let removed = store
        .unlink_identity(ann.id, hers.id, &audit("sso.unlink", at(SECOND)))
        .await
        .unwrap();
    assert_eq!(removed, Unlink::Removed);
    assert!(store.identities_of(ann.id).await.unwrap().is_empty());
}

async fn case_sso_email_verified_is_what_the_account_was_created_with(store: Arc<dyn Store>) {
    let admin_made = seed(&*store, "ann").await;
    assert!(store.email_verified(admin_made.id).await.unwrap());
    let self_made = account("self@example.com", None, at(0));
    store
        .create_account(
            &NewAccount {
                account: self_made.clone(),
                password_hash: Some(HASH.into()),
                email_verified: false,
            },
            &audit("register", at(0)),
        )
        .await
        .unwrap();
    assert!(!store.email_verified(self_made.id).await.unwrap());
    assert!(!store.email_verified(new_id()).await.unwrap());
}

async fn case_sso_stored_providers_round_trip(store: Arc<dyn Store>) {
    let corp = StoredProvider {
        id: "corp".into(),
        settings: json!({ "name": "Corp", "kind": "oidc", "issuer": "https://idp.example.com" }),
        sealed_secret: vec![1, 2, 3, 4],
        created_at: at(0),
        updated_at: at(0),
    };
    store
        .create_stored_provider(&corp, &audit("admin.sso_provider.create", at(0)))
        .await
        .unwrap();
    let err = store
        .create_stored_provider(&corp, &audit("admin.sso_provider.create", at(0)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(
        store.stored_provider("corp").await.unwrap(),
        Some(corp.clone())
    );
    assert_eq!(store.stored_provider("nope").await.unwrap(), None);
    let mut changed = corp.clone();
    changed.settings = json!({ "name": "Corp SSO", "kind": "oidc", "enabled": false });
    changed.sealed_secret = vec![9, 9];
    changed.updated_at = at(MINUTE);
    assert!(
        store
            .update_stored_provider(&changed, &audit("admin.sso_provider.update", at(MINUTE)))
            .await
            .unwrap()
    );
    let mut ghost = changed.clone();
    ghost.id = "ghost".into();
    assert!(
        !store
            .update_stored_provider(&ghost, &audit("admin.sso_provider.update", at(MINUTE)))
            .await
            .unwrap()
    );
    assert_eq!(store.stored_providers().await.unwrap(), vec![changed]);
    assert!(
        store
            .delete_stored_provider("corp", &audit("admin.sso_provider.delete", at(HOUR)))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_stored_provider("corp", &audit("admin.sso_provider.delete", at(HOUR)))
            .await
            .unwrap()
    );
    assert!(store.stored_providers().await.unwrap().is_empty());
    assert_eq!(audit_count(&*store, "admin.sso_provider.update").await, 1);
    assert_eq!(audit_count(&*store, "admin.sso_provider.delete").await, 1);
}

// ---------------------------------------------------------------------------------------
// Mail: the outbox and the e-mail codes
// ---------------------------------------------------------------------------------------

conformance! {
    case_outbox_hands_each_message_to_one_claimer =>
        outbox_hands_each_message_to_one_claimer_sqlite,
        outbox_hands_each_message_to_one_claimer_postgres;
    case_outbox_retries_sends_gives_up_and_prunes =>
        outbox_retries_sends_gives_up_and_prunes_sqlite,
        outbox_retries_sends_gives_up_and_prunes_postgres;
    case_email_codes_are_single_use_superseded_limited_and_expire =>
        email_codes_are_single_use_superseded_limited_and_expire_sqlite,
        email_codes_are_single_use_superseded_limited_and_expire_postgres;
    case_reset_password_revokes_everything_and_queues_the_notice =>
        reset_password_revokes_everything_and_queues_the_notice_sqlite,
        reset_password_revokes_everything_and_queues_the_notice_postgres;
    case_unverified_accounts_confirm_by_code_or_admin =>
        unverified_accounts_confirm_by_code_or_admin_sqlite,
        unverified_accounts_confirm_by_code_or_admin_postgres;
    case_change_email_switches_the_address_with_its_notice =>
        change_email_switches_the_address_with_its_notice_sqlite,
        change_email_switches_the_address_with_its_notice_postgres;
}

use gatehouse_domain::mail::{CodeCheck, CodePurpose, NewEmailCode, OutboxMail};

fn outbox_mail(account_id: Option<Id>, created: Timestamp) -> OutboxMail {
    OutboxMail {
        id: new_id(),
        kind: "password_reset".into(),
        account_id,
        recipient: "ann@example.com".into(),
        subject: "Reset".into(),
        body_text: "code ABCD2345".into(),
        body_html: "<p>code ABCD2345</p>".into(),
        created_at: created,
        attempts: 0,
    }
}

async fn case_outbox_hands_each_message_to_one_claimer(store: Arc<dyn Store>) {
    const MAILS: usize = 24;
    for _ in 0..MAILS {
        store
            .enqueue_mail(&outbox_mail(None, at(0)), None)
            .await
            .unwrap();
    }
    assert_eq!(store.pending_mail().await.unwrap(), MAILS as u64);
    let start = Arc::new(Barrier::new(2));
    let mut claimers = JoinSet::new();
    for _ in 0..2 {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        claimers.spawn(async move {
            let owner = new_id();
            start.wait().await;
            let mut got = Vec::new();
            loop {
                let batch = store.claim_mail(owner, at(10), at(1_000), 5).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|m| m.id));
            }
        });
    }
    let mut all = Vec::new();
    while let Some(got) = claimers.join_next().await {
        all.extend(got.unwrap());
    }
    assert_eq!(all.len(), MAILS, "every message handed out exactly once");
    assert_eq!(ids(all.iter().copied()).len(), MAILS);
    // While the leases run nobody else gets them; once they lapse, they come back.
    assert!(
        store
            .claim_mail(new_id(), at(999), at(2_000), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_mail(new_id(), at(1_000), at(2_000), 100)
        .await
        .unwrap();
    assert_eq!(again.len(), MAILS);
    assert!(again.iter().all(|m| m.attempts == 2));
}

async fn case_outbox_retries_sends_gives_up_and_prunes(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let (a, b) = (
        outbox_mail(Some(ann.id), at(0)),
        outbox_mail(Some(ann.id), at(0)),
    );
    store
        .enqueue_mail(&a, Some(&audit("mail.queue", at(0))))
        .await
        .unwrap();
    store.enqueue_mail(&b, None).await.unwrap();
    let owner = new_id();
    let claimed = store.claim_mail(owner, at(0), at(100), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let first = claimed.iter().find(|m| m.id == a.id).unwrap();
    assert_eq!(first.body_text, a.body_text);
    assert_eq!(first.attempts, 1);
    // A retry releases the lease but the message is not due before `retry_at`.
    assert!(
        !store
            .retry_mail(a.id, new_id(), at(50), "refused")
            .await
            .unwrap()
    );
    assert!(
        store
            .retry_mail(a.id, owner, at(50), "refused")
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_mail(owner, at(49), at(100), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = store.claim_mail(owner, at(50), at(150), 10).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 2);
    // Only the holder marks it sent; then it is finished and never handed out again.
    assert!(!store.mark_mail_sent(a.id, new_id(), at(60)).await.unwrap());
    assert!(store.mark_mail_sent(a.id, owner, at(60)).await.unwrap());
    assert!(!store.mark_mail_sent(a.id, owner, at(61)).await.unwrap());
    // Giving up writes the audit row with it.
    let give_up = audit("mail.give_up", at(70));
    assert!(
        store
            .give_up_mail(b.id, owner, at(70), "timeout", &give_up)
            .await
            .unwrap()
    );
    assert!(
        !store
            .give_up_mail(b.id, owner, at(71), "timeout", &give_up)
            .await
            .unwrap()
    );
    let (events, _) = audit_items(
        &*store,
        &AuditFilter {
            action: Some("mail.give_up".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(store.pending_mail().await.unwrap(), 0);
    assert!(
        store
            .claim_mail(owner, at(10_000), at(20_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Pruning removes finished rows older than the cut-off only.
    assert_eq!(store.prune_mail(at(60)).await.unwrap(), 0);
    assert_eq!(store.prune_mail(at(65)).await.unwrap(), 1);
    assert_eq!(store.prune_mail(at(1_000)).await.unwrap(), 1);
}

fn email_code(
    account_id: Id,
    purpose: CodePurpose,
    hash: &[u8],
    created: Timestamp,
) -> NewEmailCode {
    NewEmailCode {
        id: new_id(),
        account_id,
        purpose,
        code_hash: hash.to_vec(),
        new_email: None,
        created_at: created,
        expires_at: created.plus(ms(1_000)),
    }
}

async fn case_email_codes_are_single_use_superseded_limited_and_expire(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let reset = CodePurpose::PasswordReset;
    let put = |hash: &'static [u8], t: Timestamp| {
        let store = Arc::clone(&store);
        async move {
            store
                .create_email_code(
                    &email_code(ann.id, reset, hash, t),
                    &outbox_mail(Some(ann.id), t),
                    &audit("password.reset.request", t),
                )
                .await
                .unwrap();
        }
    };
    // No code yet.
    assert_eq!(
        store
            .check_email_code(ann.id, reset, b"a", at(0), 5)
            .await
            .unwrap(),
        CodeCheck::NoCode
    );
    put(b"first", at(0)).await;
    put(b"second", at(1)).await;
    assert_eq!(
        store.pending_mail().await.unwrap(),
        2,
        "each code queues its mail"
    );
    // The first was superseded: presenting it is a wrong attempt at the second.
    assert_eq!(
        store
            .check_email_code(ann.id, reset, b"first", at(2), 5)
            .await
            .unwrap(),
        CodeCheck::Wrong { left: 4 }
    );
    // Another purpose does not see it.
    assert_eq!(
        store
            .check_email_code(ann.id, CodePurpose::VerifyEmail, b"second", at(2), 5)
            .await
            .unwrap(),
        CodeCheck::NoCode
    );
    assert_eq!(
        store
            .check_email_code(ann.id, reset, b"second", at(3), 5)
            .await
            .unwrap(),
        CodeCheck::Spent { new_email: None }
    );
    assert_eq!(
        store
            .check_email_code(ann.id, reset, b"second", at(4), 5)
            .await
            .unwrap(),
        CodeCheck::NoCode
    );
    // Attempt limit.
    put(b"third", at(10)).await;
    for left in (0..5).rev() {
        assert_eq!(
            store
                .check_email_code(ann.id, reset, b"wrong", at(11), 5)
                .await
                .unwrap(),
            CodeCheck::Wrong { left }
        );
    }
    assert_eq!(
        store
            .check_email_code(ann.id, reset, b"third", at(12), 5)
            .await
            .unwrap(),
        CodeCheck::NoCode
    );
    // Expiry.
    put(b"fourth", at(20)).await;
    assert_eq!(
        store
            .check_email_code(ann.id, reset, b"fourth", at(1_020), 5)
            .await
            .unwrap(),
        CodeCheck::NoCode
    );
}

async fn case_reset_password_revokes_everything_and_queues_the_notice(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    let (one, _) = login(&*store, ann.id, TokenKind::Refresh, at(0)).await;
    let (two, _) = login(&*store, ann.id, TokenKind::Refresh, at(1)).await;
    store
        .create_email_code(
            &email_code(ann.id, CodePurpose::PasswordReset, b"code", at(2)),
            &outbox_mail(Some(ann.id), at(2)),
            &audit("password.reset.request", at(2)),
        )
        .await
        .unwrap();
    let notice = outbox_mail(Some(ann.id), at(3));
    let revoked = store
        .reset_password(
            ann.id,
            NEW_HASH,
            None,
            at(3),
            Some(&notice),
            &audit("password.reset", at(3)),
        )
        .await
        .unwrap();
    assert_eq!(ids(revoked), ids([one.id, two.id]));
    assert_eq!(status_of(&*store, one.id).await, SessionStatus::Revoked);
    assert_eq!(
        store.password_hash(ann.id).await.unwrap().as_deref(),
        Some(NEW_HASH)
    );
    assert_eq!(store.pending_mail().await.unwrap(), 2);
    // The outstanding reset code died with the reset.
    assert_eq!(
        store
            .check_email_code(ann.id, CodePurpose::PasswordReset, b"code", at(4), 5)
            .await
            .unwrap(),
        CodeCheck::NoCode
    );
    let (events, _) = audit_items(
        &*store,
        &AuditFilter {
            action: Some("password.reset".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(events.len(), 1);
}

async fn case_unverified_accounts_confirm_by_code_or_admin(store: Arc<dyn Store>) {
    let ann = account("ann@example.com", Some("ann"), at(0));
    let new = NewAccount {
        account: ann.clone(),
        password_hash: Some(HASH.into()),
        email_verified: false,
    };
    let verify = CodePurpose::VerifyEmail;
    store
        .create_unverified_account(
            &new,
            &email_code(ann.id, verify, b"code", at(0)),
            &outbox_mail(Some(ann.id), at(0)),
            &audit("register", at(0)),
        )
        .await
        .unwrap();
    // One transaction: account, password, mark, code and mail.
    assert_eq!(
        store.password_hash(ann.id).await.unwrap().as_deref(),
        Some(HASH)
    );
    assert!(store.email_unverified(ann.id).await.unwrap());
    assert_eq!(store.pending_mail().await.unwrap(), 1);
    // A taken email is a conflict and leaves nothing behind.
    let twin = NewAccount {
        account: account("ann@example.com", None, at(1)),
        password_hash: None,
        email_verified: false,
    };
    let taken = store
        .create_unverified_account(
            &twin,
            &email_code(twin.account.id, verify, b"x", at(1)),
            &outbox_mail(None, at(1)),
            &audit("register", at(1)),
        )
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict)));
    assert_eq!(store.pending_mail().await.unwrap(), 1);
    // A wrong code confirms nothing; the right one confirms with its audit row.
    let done = audit("email.verify", at(2));
    assert_eq!(
        store
            .verify_email(ann.id, b"nope", at(2), 5, &done)
            .await
            .unwrap(),
        CodeCheck::Wrong { left: 4 }
    );
    assert!(store.email_unverified(ann.id).await.unwrap());
    assert!(
        !store.email_verified(ann.id).await.unwrap(),
        "SSO may not link to it yet"
    );
    assert_eq!(
        store
            .verify_email(ann.id, b"code", at(2), 5, &done)
            .await
            .unwrap(),
        CodeCheck::Spent { new_email: None }
    );
    assert!(!store.email_unverified(ann.id).await.unwrap());
    assert!(
        store.email_verified(ann.id).await.unwrap(),
        "a confirmed address counts for SSO's linking rule"
    );
    let (events, _) = audit_items(
        &*store,
        &AuditFilter {
            action: Some("email.verify".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(events.len(), 1);
    // Other accounts count as confirmed; marking one confirmed is a no-op.
    let bob = seed(&*store, "bob").await;
    assert!(!store.email_unverified(bob.id).await.unwrap());
    assert!(
        !store
            .mark_email_verified(bob.id, &audit("admin.email.verify", at(3)))
            .await
            .unwrap()
    );
}

async fn case_change_email_switches_the_address_with_its_notice(store: Arc<dyn Store>) {
    let ann = seed(&*store, "ann").await;
    seed(&*store, "bob").await;
    let change = CodePurpose::ChangeEmail;
    let put = |email: &str, hash: &'static [u8], t: Timestamp| NewEmailCode {
        new_email: Some(email.into()),
        ..email_code(ann.id, change, hash, t)
    };
    store
        .create_email_code(
            &put("bob@example.com", b"taken", at(0)),
            &outbox_mail(Some(ann.id), at(0)),
            &audit("email.change.request", at(0)),
        )
        .await
        .unwrap();
    let notice = outbox_mail(Some(ann.id), at(1));
    let done = audit("email.change", at(1));
    // The address was taken meanwhile: conflict, and nothing changes (the code lives on).
    let taken = store
        .change_email(ann.id, b"taken", at(1), 5, Some(&notice), &done)
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict)));
    assert_eq!(store.pending_mail().await.unwrap(), 1);
    store
        .create_email_code(
            &put("ann.new@example.com", b"code", at(2)),
            &outbox_mail(Some(ann.id), at(2)),
            &audit("email.change.request", at(2)),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .change_email(ann.id, b"taken", at(3), 5, Some(&notice), &done)
            .await
            .unwrap(),
        CodeCheck::Wrong { left: 4 }
    );
    assert_eq!(
        store
            .change_email(ann.id, b"code", at(3), 5, Some(&notice), &done)
            .await
            .unwrap(),
        CodeCheck::Spent {
            new_email: Some("ann.new@example.com".into())
        }
    );
    let moved = store
        .account_by_email("ann.new@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.id, ann.id);
    assert!(
        store
            .account_by_email("ann@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.pending_mail().await.unwrap(),
        3,
        "two codes and the notice"
    );
}
