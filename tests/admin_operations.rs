//! The health-authority operations over real HTTP: admin accounts and their pagination,
//! passwords, the audit log, prefecture notices, health-center tokens and admin login.

mod common;

use common::{daily_keys, error_code, TestServer};
use mamori::auth::Role;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{json, Value};

/// A password for accounts the tests create through `createAdmin`.
const PASSWORD: &str = "another long passphrase";

const CREATE_ADMIN: &str =
    "mutation($input: CreateAdminInput!) { createAdmin(input: $input) { id email role prefecture { code } } }";
const DELETE_ADMIN: &str = "mutation($id: ID!) { deleteAdmin(id: $id) { id } }";
const ADMIN_LOGIN: &str = "mutation($e: String!, $p: String!) { adminLogin(email: $e, password: $p) { accessToken refreshToken } }";
const REFRESH: &str =
    "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken refreshToken } }";
const CHANGE_PASSWORD: &str =
    "mutation($current: String!, $new: String!) { changePassword(input: {currentPassword: $current, newPassword: $new}) }";
const PUBLISH: &str = "mutation($p: Int!, $m: String!) { publishPrefectureNotice(input: {prefecture: $p, message: $m}) { id message withdrawnAt } }";
const WITHDRAW: &str =
    "mutation($id: ID!) { withdrawPrefectureNotice(id: $id) { id message withdrawnAt } }";
const ISSUE: &str = "mutation($p: Int!, $n: Int!, $h: Int!) { issueHealthCenterTokens(input: {prefecture: $p, count: $n, validForHours: $h}) { codes expiresAt } }";
const REVOKE: &str =
    "mutation($id: ID!) { revokeHealthCenterToken(id: $id) { id status revokedAt } }";

/// Sends a request and returns `data` of the response, panicking on any error.
async fn data(server: &TestServer, token: Option<&str>, query: &str, variables: Value) -> Value {
    let body = server.graphql(token, query, variables).await;
    assert!(body.get("errors").is_none(), "{query}: {body}");
    body["data"].clone()
}

/// Returns `extensions.<name>` of the first error of a response.
fn extension<'a>(body: &'a Value, name: &str) -> &'a Value {
    &body["errors"][0]["extensions"][name]
}

/// Returns the message of the first error of a response.
fn error_message(body: &Value) -> &str {
    body["errors"][0]["message"].as_str().unwrap_or_default()
}

/// Returns the strings at `field` of each node of a connection.
fn node_strings(connection: &Value, field: &str) -> Vec<String> {
    connection["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("not a connection: {connection}"))
        .iter()
        .map(|node| node[field].as_str().unwrap().to_owned())
        .collect()
}

/// Creates an admin as `token` and returns its id.
async fn create_admin(
    server: &TestServer,
    token: &str,
    email: &str,
    role: &str,
    prefecture: Option<i16>,
) -> String {
    let input =
        json!({ "email": email, "password": PASSWORD, "role": role, "prefecture": prefecture });
    let data = data(server, Some(token), CREATE_ADMIN, json!({ "input": input })).await;
    data["createAdmin"]["id"].as_str().unwrap().to_owned()
}

/// Logs an admin in and returns its access and refresh tokens.
async fn admin_login(server: &TestServer, email: &str, password: &str) -> (String, String) {
    let data = data(
        server,
        None,
        ADMIN_LOGIN,
        json!({ "e": email, "p": password }),
    )
    .await;
    let session = &data["adminLogin"];
    (
        session["accessToken"].as_str().unwrap().to_owned(),
        session["refreshToken"].as_str().unwrap().to_owned(),
    )
}

/// Returns the id and email of the caller of `token`.
async fn viewer(server: &TestServer, token: &str) -> (String, String) {
    let data = data(server, Some(token), "{ viewer { id email } }", json!({})).await;
    (
        data["viewer"]["id"].as_str().unwrap().to_owned(),
        data["viewer"]["email"].as_str().unwrap().to_owned(),
    )
}

/// Returns the ids of the admins visible to the caller of `token`, in list order.
async fn admin_ids(server: &TestServer, token: &str) -> Vec<String> {
    let data = data(
        server,
        Some(token),
        "{ admins(first: 100) { nodes { id } } }",
        json!({}),
    )
    .await;
    node_strings(&data["admins"], "id")
}

#[tokio::test]
async fn create_admin_rejects_invalid_input() {
    let server = TestServer::start().await;
    let root = server.admin_token(Role::SuperAdmin, None).await;
    create_admin(&server, &root, "taken@example.jp", "NATIONAL_ADMIN", None).await;
    let before = admin_ids(&server, &root).await;

    let input = |email: &str, password: &str, role: &str, prefecture: Option<i16>| json!({ "email": email, "password": password, "role": role, "prefecture": prefecture });
    let cases = [
        (
            "email without @",
            input("not-an-email", PASSWORD, "NATIONAL_ADMIN", None),
            "BAD_USER_INPUT",
            Some("email"),
        ),
        (
            "email without a domain dot",
            input("admin@localhost", PASSWORD, "NATIONAL_ADMIN", None),
            "BAD_USER_INPUT",
            Some("email"),
        ),
        (
            "password of 11 characters",
            input("short@example.jp", "elevenchars", "NATIONAL_ADMIN", None),
            "BAD_USER_INPUT",
            Some("password"),
        ),
        (
            "PREFECTURE_ADMIN without prefecture",
            input("tokyo@example.jp", PASSWORD, "PREFECTURE_ADMIN", None),
            "BAD_USER_INPUT",
            Some("prefecture"),
        ),
        (
            "SUPER_ADMIN with prefecture",
            input("super@example.jp", PASSWORD, "SUPER_ADMIN", Some(13)),
            "BAD_USER_INPUT",
            Some("prefecture"),
        ),
        (
            "NATIONAL_ADMIN with prefecture",
            input("national@example.jp", PASSWORD, "NATIONAL_ADMIN", Some(13)),
            "BAD_USER_INPUT",
            Some("prefecture"),
        ),
        (
            "email taken, in other case",
            input("Taken@Example.JP", PASSWORD, "NATIONAL_ADMIN", None),
            "CONFLICT",
            None,
        ),
    ];
    for (case, input, code, field) in cases {
        let body = server
            .graphql(Some(&root), CREATE_ADMIN, json!({ "input": input }))
            .await;
        assert_eq!(error_code(&body), code, "{case}: {body}");
        assert_eq!(extension(&body, "field").as_str(), field, "{case}: {body}");
        assert_eq!(body["data"], Value::Null, "{case}");
    }
    assert_eq!(
        admin_ids(&server, &root).await,
        before,
        "nothing was created"
    );

    let twelve = input("twelve@example.jp", "twelve chars", "NATIONAL_ADMIN", None);
    let body = server
        .graphql(Some(&root), CREATE_ADMIN, json!({ "input": twelve }))
        .await;
    assert_eq!(
        body["data"]["createAdmin"]["email"], "twelve@example.jp",
        "a password of 12 characters is long enough: {body}"
    );
}

#[tokio::test]
async fn create_admin_names_prefecture_field() {
    let server = TestServer::start().await;
    let root = server.admin_token(Role::SuperAdmin, None).await;
    // A missing prefecture and an out-of-range one are errors of the same input field, so a
    // dashboard can attach both to the same form input.
    for prefecture in [None, Some(48)] {
        let input = json!({
            "email": "tokyo@example.jp",
            "password": PASSWORD,
            "role": "PREFECTURE_ADMIN",
            "prefecture": prefecture,
        });
        let body = server
            .graphql(Some(&root), CREATE_ADMIN, json!({ "input": input }))
            .await;
        assert_eq!(
            error_code(&body),
            "BAD_USER_INPUT",
            "{prefecture:?}: {body}"
        );
        assert_eq!(
            extension(&body, "field"),
            "prefecture",
            "{prefecture:?}: {body}"
        );
    }
}

#[tokio::test]
async fn admins_page_by_cursor() {
    let server = TestServer::start().await;
    let root = server.admin_token(Role::SuperAdmin, None).await;
    let mut expected = vec![viewer(&server, &root).await.0];
    for number in 1..=5 {
        let email = format!("admin{number}@example.jp");
        expected.push(create_admin(&server, &root, &email, "PREFECTURE_ADMIN", Some(13)).await);
    }

    let page_query = "query($after: String) { admins(first: 2, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }";
    let mut listed = Vec::new();
    let mut after = Value::Null;
    for page_number in 1..=3 {
        let data = data(&server, Some(&root), page_query, json!({ "after": after })).await;
        let page = &data["admins"];
        let ids = node_strings(page, "id");
        assert_eq!(ids.len(), 2, "page {page_number}: {page}");
        assert_eq!(
            page["pageInfo"]["hasNextPage"],
            page_number < 3,
            "page {page_number}: {page}"
        );
        assert!(
            page["pageInfo"]["endCursor"].is_string(),
            "page {page_number}: {page}"
        );
        listed.extend(ids);
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(listed, expected, "oldest first, each admin once");

    let data = data(&server, Some(&root), page_query, json!({ "after": after })).await;
    let past_end = &data["admins"];
    assert_eq!(past_end["nodes"], json!([]), "{past_end}");
    assert_eq!(past_end["pageInfo"]["hasNextPage"], false);
    assert_eq!(past_end["pageInfo"]["endCursor"], Value::Null);
}

#[tokio::test]
async fn admins_rejects_bad_page_arguments() {
    let server = TestServer::start().await;
    let root = server.admin_token(Role::SuperAdmin, None).await;
    let query = "query($first: Int, $after: String) { admins(first: $first, after: $after) { nodes { id } } }";
    let base64 = |text: &str| {
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text)
    };
    let cases = [
        (json!(0), Value::Null, "first"),
        (json!(101), Value::Null, "first"),
        (json!(-1), Value::Null, "first"),
        (Value::Null, json!("%%%"), "after"),
        (Value::Null, json!(base64("not a uuid")), "after"),
        // An audit log cursor contains a number, not an admin id.
        (Value::Null, json!(base64("1")), "after"),
    ];
    for (first, after, field) in cases {
        let variables = json!({ "first": first, "after": after });
        let body = server.graphql(Some(&root), query, variables).await;
        assert_eq!(
            error_code(&body),
            "BAD_USER_INPUT",
            "{first} {after}: {body}"
        );
        assert_eq!(extension(&body, "field"), field, "{first} {after}: {body}");
    }
    for first in [1, 100] {
        let body = server
            .graphql(Some(&root), query, json!({ "first": first }))
            .await;
        assert!(body.get("errors").is_none(), "first {first}: {body}");
    }
}

#[tokio::test]
async fn prefecture_admin_lists_own_admins() {
    let server = TestServer::start().await;
    let root = server.admin_token(Role::SuperAdmin, None).await;
    let tokyo_admin = server.admin_token(Role::PrefectureAdmin, Some(13)).await;
    let osaka_admin = server.admin_token(Role::PrefectureAdmin, Some(27)).await;
    let tokyo_self = viewer(&server, &tokyo_admin).await.0;
    let osaka_self = viewer(&server, &osaka_admin).await.0;
    let tokyo_other =
        create_admin(&server, &root, "t@example.jp", "PREFECTURE_ADMIN", Some(13)).await;
    let osaka_other =
        create_admin(&server, &root, "o@example.jp", "PREFECTURE_ADMIN", Some(27)).await;
    create_admin(&server, &root, "n@example.jp", "NATIONAL_ADMIN", None).await;

    assert_eq!(
        admin_ids(&server, &tokyo_admin).await,
        vec![tokyo_self, tokyo_other]
    );
    assert_eq!(
        admin_ids(&server, &osaka_admin).await,
        vec![osaka_self, osaka_other]
    );
    assert_eq!(
        admin_ids(&server, &root).await.len(),
        6,
        "a super admin sees every account"
    );
}

#[tokio::test]
async fn change_password_checks_and_revokes_sessions() {
    let server = TestServer::start().await;
    let root = server.admin_token(Role::SuperAdmin, None).await;
    let email = "tokyo@example.jp";
    create_admin(&server, &root, email, "PREFECTURE_ADMIN", Some(13)).await;
    let (access, first_refresh) = admin_login(&server, email, PASSWORD).await;
    let (_, second_refresh) = admin_login(&server, email, PASSWORD).await;
    let new_password = "a brand new passphrase";

    let wrong = server
        .graphql(
            Some(&access),
            CHANGE_PASSWORD,
            json!({ "current": "not the password", "new": new_password }),
        )
        .await;
    assert_eq!(error_code(&wrong), "BAD_USER_INPUT", "{wrong}");
    assert_eq!(extension(&wrong, "field"), "currentPassword");

    let short = server
        .graphql(
            Some(&access),
            CHANGE_PASSWORD,
            json!({ "current": PASSWORD, "new": "elevenchars" }),
        )
        .await;
    assert_eq!(error_code(&short), "BAD_USER_INPUT", "{short}");
    assert_eq!(extension(&short, "field"), "newPassword");
    admin_login(&server, email, PASSWORD).await;

    let changed = data(
        &server,
        Some(&access),
        CHANGE_PASSWORD,
        json!({ "current": PASSWORD, "new": new_password }),
    )
    .await;
    assert_eq!(changed["changePassword"], true);

    let old = server
        .graphql(None, ADMIN_LOGIN, json!({ "e": email, "p": PASSWORD }))
        .await;
    assert_eq!(error_code(&old), "UNAUTHENTICATED", "{old}");
    let (_, new_refresh) = admin_login(&server, email, new_password).await;

    for refresh in [first_refresh, second_refresh] {
        let body = server.graphql(None, REFRESH, json!({ "t": refresh })).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    }
    let body = server
        .graphql(None, REFRESH, json!({ "t": new_refresh }))
        .await;
    assert!(
        body["data"]["refreshSession"]["accessToken"].is_string(),
        "a session begun after the change stays valid: {body}"
    );
}

#[tokio::test]
async fn delete_admin_rejects_own_account() {
    let server = TestServer::start().await;
    for (role, prefecture) in [(Role::SuperAdmin, None), (Role::PrefectureAdmin, Some(13))] {
        let token = server.admin_token(role, prefecture).await;
        let (id, _) = viewer(&server, &token).await;
        let body = server
            .graphql(Some(&token), DELETE_ADMIN, json!({ "id": id }))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{role:?}: {body}");
        assert_eq!(extension(&body, "field"), "id", "{role:?}");
        assert_eq!(viewer(&server, &token).await.0, id, "{role:?} still exists");
    }
}

/// Returns the id of the newest health-center token of a prefecture that `token` can list.
async fn newest_token_id(server: &TestServer, token: &str, prefecture: i16) -> String {
    let data = data(
        server,
        Some(token),
        "query($p: Int!) { healthCenterTokens(prefecture: $p, first: 1) { nodes { id } } }",
        json!({ "p": prefecture }),
    )
    .await;
    data["healthCenterTokens"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Publishes a notice and returns its id.
async fn publish(server: &TestServer, token: &str, prefecture: i16, message: &str) -> String {
    let data = data(
        server,
        Some(token),
        PUBLISH,
        json!({ "p": prefecture, "m": message }),
    )
    .await;
    data["publishPrefectureNotice"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Returns each audit log entry visible to the caller of `token` as (action, admin id, admin email,
/// prefecture, target), in list order.
async fn audit_entries(
    server: &TestServer,
    token: &str,
) -> Vec<(String, Value, Value, Value, Value)> {
    let data = data(
        server,
        Some(token),
        "{ auditLog(first: 100) { nodes { action adminId adminEmail prefecture target detail } } }",
        json!({}),
    )
    .await;
    data["auditLog"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["action"].as_str().unwrap().to_owned(),
                entry["adminId"].clone(),
                entry["adminEmail"].clone(),
                entry["prefecture"].clone(),
                entry["target"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn audit_log_records_each_action() {
    let server = TestServer::start().await;
    let root = server.admin_token(Role::SuperAdmin, None).await;
    let (root_id, root_email) = viewer(&server, &root).await;
    let actor_email = "actor@example.jp";
    let actor_id = create_admin(&server, &root, actor_email, "PREFECTURE_ADMIN", Some(13)).await;
    let (actor, _) = admin_login(&server, actor_email, PASSWORD).await;

    let target_id = create_admin(
        &server,
        &actor,
        "target@example.jp",
        "PREFECTURE_ADMIN",
        Some(13),
    )
    .await;
    data(
        &server,
        Some(&actor),
        DELETE_ADMIN,
        json!({ "id": target_id }),
    )
    .await;
    let new_password = "a brand new passphrase";
    data(
        &server,
        Some(&actor),
        CHANGE_PASSWORD,
        json!({ "current": PASSWORD, "new": new_password }),
    )
    .await;
    let notice_id = publish(&server, &actor, 13, "Wash your hands").await;
    data(&server, Some(&actor), WITHDRAW, json!({ "id": notice_id })).await;
    data(
        &server,
        Some(&actor),
        ISSUE,
        json!({ "p": 13, "n": 2, "h": 24 }),
    )
    .await;
    let token_id = newest_token_id(&server, &actor, 13).await;
    data(&server, Some(&actor), REVOKE, json!({ "id": token_id })).await;
    let osaka_notice = publish(&server, &root, 27, "Osaka notice").await;
    let national_id = create_admin(&server, &root, "n@example.jp", "NATIONAL_ADMIN", None).await;

    let by = |action: &str, id: &str, email: &str, prefecture: Value, target: Value| {
        (
            action.to_owned(),
            json!(id),
            json!(email),
            prefecture,
            target,
        )
    };
    let by_actor =
        |action: &str, target: Value| by(action, &actor_id, actor_email, json!(13), target);
    let tokyo_entries = vec![
        by_actor("REVOKE_TOKEN", json!(token_id)),
        by_actor("ISSUE_TOKENS", Value::Null),
        by_actor("WITHDRAW_NOTICE", json!(notice_id)),
        by_actor("PUBLISH_NOTICE", json!(notice_id)),
        by_actor("CHANGE_PASSWORD", json!(actor_id)),
        by_actor("DELETE_ADMIN", json!(target_id)),
        by_actor("CREATE_ADMIN", json!(target_id)),
        by(
            "CREATE_ADMIN",
            &root_id,
            &root_email,
            json!(13),
            json!(actor_id),
        ),
    ];
    let mut all_entries = vec![
        by(
            "CREATE_ADMIN",
            &root_id,
            &root_email,
            Value::Null,
            json!(national_id),
        ),
        by(
            "PUBLISH_NOTICE",
            &root_id,
            &root_email,
            json!(27),
            json!(osaka_notice),
        ),
    ];
    all_entries.extend(tokyo_entries.clone());

    assert_eq!(
        audit_entries(&server, &root).await,
        all_entries,
        "newest first"
    );
    assert_eq!(
        audit_entries(&server, &actor).await,
        tokyo_entries,
        "a prefecture admin sees only its prefecture's entries"
    );

    let details = data(
        &server,
        Some(&root),
        "{ auditLog(first: 100) { nodes { action detail } } }",
        json!({}),
    )
    .await;
    let detail_of = |action: &str| {
        details["auditLog"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["action"] == action)
            .map(|entry| entry["detail"].as_str().unwrap_or_default().to_owned())
            .unwrap()
    };
    assert!(
        detail_of("ISSUE_TOKENS").starts_with("2 tokens"),
        "{details}"
    );
    assert_eq!(
        detail_of("DELETE_ADMIN"),
        "PREFECTURE_ADMIN target@example.jp"
    );
}

#[tokio::test]
async fn audit_log_pages_newest_first() {
    let server = TestServer::start().await;
    let root = server.admin_token(Role::SuperAdmin, None).await;
    let mut notices = Vec::new();
    for number in 1..=5 {
        notices.push(publish(&server, &root, 13, &format!("notice {number}")).await);
    }
    notices.reverse();

    let page_query = "query($after: String) { auditLog(first: 2, after: $after) { nodes { target } pageInfo { hasNextPage endCursor } } }";
    let mut targets = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = data(&server, Some(&root), page_query, json!({ "after": after })).await;
        let page = &data["auditLog"];
        targets.extend(node_strings(page, "target"));
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(targets, notices);
}

/// Returns the current notice of a prefecture, as a phone app sees it without login.
async fn current_notice(server: &TestServer, prefecture: i16) -> Value {
    let data = data(
        server,
        None,
        "query($c: Int!) { prefecture(code: $c) { notice { id message } } }",
        json!({ "c": prefecture }),
    )
    .await;
    data["prefecture"]["notice"].clone()
}

#[tokio::test]
async fn withdrawn_notice_falls_back_to_previous() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::PrefectureAdmin, Some(13)).await;
    let root = server.admin_token(Role::SuperAdmin, None).await;
    let first = publish(&server, &admin, 13, "first").await;
    let second = publish(&server, &admin, 13, "second").await;
    let third = publish(&server, &admin, 13, "third").await;
    let osaka = publish(&server, &root, 27, "Osaka").await;
    let notice = |id: &str, message: &str| json!({ "id": id, "message": message });
    assert_eq!(current_notice(&server, 13).await, notice(&third, "third"));

    let withdrawn = data(&server, Some(&admin), WITHDRAW, json!({ "id": second })).await;
    assert!(withdrawn["withdrawPrefectureNotice"]["withdrawnAt"].is_string());
    assert_eq!(
        current_notice(&server, 13).await,
        notice(&third, "third"),
        "withdrawing an older notice leaves the newest current"
    );

    data(&server, Some(&admin), WITHDRAW, json!({ "id": third })).await;
    assert_eq!(
        current_notice(&server, 13).await,
        notice(&first, "first"),
        "the newest notice not withdrawn is current"
    );
    assert_eq!(current_notice(&server, 27).await, notice(&osaka, "Osaka"));

    let again = server
        .graphql(Some(&admin), WITHDRAW, json!({ "id": third }))
        .await;
    assert_eq!(error_code(&again), "CONFLICT", "{again}");

    data(&server, Some(&admin), WITHDRAW, json!({ "id": first })).await;
    assert_eq!(current_notice(&server, 13).await, Value::Null);

    let unknown = server
        .graphql(Some(&admin), WITHDRAW, json!({ "id": "999999" }))
        .await;
    assert_eq!(error_code(&unknown), "NOT_FOUND", "{unknown}");
    let invalid = server
        .graphql(Some(&admin), WITHDRAW, json!({ "id": "abc" }))
        .await;
    assert_eq!(error_code(&invalid), "BAD_USER_INPUT", "{invalid}");
    assert_eq!(extension(&invalid, "field"), "id");
}

#[tokio::test]
async fn notice_history_lists_newest_first() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::PrefectureAdmin, Some(13)).await;
    let first = publish(&server, &admin, 13, "first").await;
    server.clock.advance(chrono::Duration::minutes(20));
    let second = publish(&server, &admin, 13, "second").await;
    server.clock.advance(chrono::Duration::minutes(20));
    data(&server, Some(&admin), WITHDRAW, json!({ "id": first })).await;
    let withdrawn_at = server.clock.now();

    let data = data(
        &server,
        Some(&admin),
        "{ prefectureNoticeHistory(prefecture: 13) { nodes { id message publishedAt withdrawnAt } pageInfo { hasNextPage } } }",
        json!({}),
    )
    .await;
    let history = &data["prefectureNoticeHistory"];
    assert_eq!(node_strings(history, "id"), vec![second, first]);
    let nodes = history["nodes"].as_array().unwrap();
    assert_eq!(nodes[0]["message"], "second");
    assert_eq!(nodes[0]["withdrawnAt"], Value::Null);
    assert_eq!(nodes[1]["message"], "first");
    let at = |value: &Value| chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap();
    assert_eq!(at(&nodes[1]["withdrawnAt"]), withdrawn_at);
    assert_eq!(
        at(&nodes[1]["publishedAt"]),
        withdrawn_at - chrono::Duration::minutes(40)
    );
    assert_eq!(history["pageInfo"]["hasNextPage"], false);
}

/// Issues codes as `token` and returns them.
async fn issue(
    server: &TestServer,
    token: &str,
    prefecture: i16,
    count: i32,
    hours: i32,
) -> Vec<String> {
    let data = data(
        server,
        Some(token),
        ISSUE,
        json!({ "p": prefecture, "n": count, "h": hours }),
    )
    .await;
    data["issueHealthCenterTokens"]["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap().to_owned())
        .collect()
}

/// Returns the number of stored diagnosis-key uploads.
async fn stored_uploads(server: &TestServer) -> u64 {
    mamori::entity::diagnosis_key_uploads::Entity::find()
        .count(&server.app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn issued_codes_work_for_upload() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::PrefectureAdmin, Some(13)).await;
    let data = data(
        &server,
        Some(&admin),
        ISSUE,
        json!({ "p": 13, "n": 3, "h": 24 }),
    )
    .await;
    let issued = &data["issueHealthCenterTokens"];
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(issued["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(expires_at, server.clock.now() + chrono::Duration::hours(24));
    let codes: Vec<&str> = issued["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 3, "{issued}");
    let distinct: std::collections::HashSet<&str> = codes.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "codes are distinct: {issued}");

    for (seed, code) in codes.iter().enumerate() {
        assert_eq!(code.len(), 14, "{code}");
        let user = server.login(Some(13)).await;
        let keys = daily_keys(seed as u32, &[1], server.clock.now());
        let body = server.upload_keys(&user, code, &keys).await;
        assert_eq!(body["data"]["uploadDiagnosisKeys"]["keyCount"], 1, "{body}");
        assert_eq!(body["data"]["uploadDiagnosisKeys"]["status"], "VERIFIED");
    }
    assert_eq!(stored_uploads(&server).await, 3);
}

#[tokio::test]
async fn issue_tokens_rejects_invalid_input() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::SuperAdmin, None).await;
    let cases = [
        (0, 24, "count"),
        (101, 24, "count"),
        (-1, 24, "count"),
        (1, 0, "validForHours"),
        (1, -5, "validForHours"),
        (1, 90 * 24 + 1, "validForHours"),
    ];
    for (count, hours, field) in cases {
        let body = server
            .graphql(
                Some(&admin),
                ISSUE,
                json!({ "p": 13, "n": count, "h": hours }),
            )
            .await;
        assert_eq!(
            error_code(&body),
            "BAD_USER_INPUT",
            "{count} {hours}: {body}"
        );
        assert_eq!(extension(&body, "field"), field, "{count} {hours}: {body}");
    }
    let listed = data(
        &server,
        Some(&admin),
        "{ healthCenterTokens { nodes { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(listed["healthCenterTokens"]["nodes"], json!([]));

    assert_eq!(issue(&server, &admin, 13, 100, 90 * 24).await.len(), 100);
}

#[tokio::test]
async fn issue_tokens_error_names_given_count() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::SuperAdmin, None).await;
    let body = server
        .graphql(Some(&admin), ISSUE, json!({ "p": 13, "n": -3, "h": 24 }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(
        error_message(&body).contains("-3"),
        "the message names the count sent: {body}"
    );
}

#[tokio::test]
async fn issue_tokens_enforces_daily_quota() {
    let server = TestServer::start_with(|config| config.token_daily_quota = 5).await;
    let admin = server.admin_token(Role::SuperAdmin, None).await;
    assert_eq!(issue(&server, &admin, 13, 3, 24).await.len(), 3);

    let over = server
        .graphql(Some(&admin), ISSUE, json!({ "p": 13, "n": 3, "h": 24 }))
        .await;
    assert_eq!(error_code(&over), "RATE_LIMITED", "{over}");
    // 2026-11-20 09:00 UTC is 18:00 in Japan, and the quota renews at midnight Japan time.
    assert_eq!(extension(&over, "retryAfterSeconds"), 6 * 3600, "{over}");
    let listed = data(
        &server,
        Some(&admin),
        "{ healthCenterTokens(prefecture: 13) { nodes { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        node_strings(&listed["healthCenterTokens"], "id").len(),
        3,
        "the rejected call issued nothing"
    );

    assert_eq!(issue(&server, &admin, 13, 2, 24).await.len(), 2);
    let full = server
        .graphql(Some(&admin), ISSUE, json!({ "p": 13, "n": 1, "h": 24 }))
        .await;
    assert_eq!(error_code(&full), "RATE_LIMITED", "{full}");
    assert_eq!(
        issue(&server, &admin, 27, 5, 24).await.len(),
        5,
        "each prefecture has its own quota"
    );

    server.clock.advance(chrono::Duration::hours(6));
    // Access tokens last an hour, so the admin logs in again.
    let admin = server.admin_token(Role::SuperAdmin, None).await;
    assert_eq!(
        issue(&server, &admin, 13, 1, 24).await.len(),
        1,
        "a new day in Japan"
    );
}

/// Lists the token ids of prefecture 13 with `status`, or all of them, and checks each node's
/// status and that no code appears.
async fn token_ids(
    server: &TestServer,
    token: &str,
    status: Option<&str>,
    codes: &[String],
) -> Vec<String> {
    let body = server
        .graphql(
            Some(token),
            "query($s: HealthCenterTokenStatus) { healthCenterTokens(prefecture: 13, status: $s) { nodes { id status prefecture { code } createdAt expiresAt redeemedAt revokedAt } } }",
            json!({ "s": status }),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    let text = body.to_string();
    for code in codes {
        assert!(!text.contains(code.as_str()), "code {code} listed: {body}");
        assert!(
            !text.contains(&code.replace('-', "")),
            "code {code} listed: {body}"
        );
    }
    let connection = &body["data"]["healthCenterTokens"];
    if let Some(status) = status {
        for node in connection["nodes"].as_array().unwrap() {
            assert_eq!(node["status"], status, "{body}");
        }
    }
    node_strings(connection, "id")
}

#[tokio::test]
async fn token_list_filters_by_status() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::PrefectureAdmin, Some(13)).await;
    let mut codes = Vec::new();
    let mut ids = Vec::new();
    for hours in [1, 48, 48, 48] {
        codes.extend(issue(&server, &admin, 13, 1, hours).await);
        ids.push(newest_token_id(&server, &admin, 13).await);
    }
    let [expiring, redeemed, revoked, unused] = [0, 1, 2, 3].map(|index| ids[index].clone());

    let user = server.login(Some(13)).await;
    let keys = daily_keys(1, &[1], server.clock.now());
    let upload = server.upload_keys(&user, &codes[1], &keys).await;
    assert_eq!(
        upload["data"]["uploadDiagnosisKeys"]["keyCount"], 1,
        "{upload}"
    );
    data(&server, Some(&admin), REVOKE, json!({ "id": revoked })).await;
    server.clock.advance(chrono::Duration::hours(2));
    // Access tokens last an hour, so the admin logs in again after each step of the clock.
    let admin = server.admin_token(Role::PrefectureAdmin, Some(13)).await;

    let all = token_ids(&server, &admin, None, &codes).await;
    assert_eq!(
        all,
        vec![
            unused.clone(),
            revoked.clone(),
            redeemed.clone(),
            expiring.clone()
        ],
        "newest first"
    );
    let expected = [
        ("ISSUED", vec![unused.clone()]),
        ("REDEEMED", vec![redeemed.clone()]),
        ("EXPIRED", vec![expiring.clone()]),
        ("REVOKED", vec![revoked.clone()]),
    ];
    for (status, ids) in expected {
        assert_eq!(
            token_ids(&server, &admin, Some(status), &codes).await,
            ids,
            "{status}"
        );
    }

    // Once every validity has passed, spent and revoked tokens keep their status.
    server.clock.advance(chrono::Duration::days(3));
    let admin = server.admin_token(Role::PrefectureAdmin, Some(13)).await;
    let expected = [
        ("ISSUED", vec![]),
        ("REDEEMED", vec![redeemed]),
        ("EXPIRED", vec![unused, expiring]),
        ("REVOKED", vec![revoked]),
    ];
    for (status, ids) in expected {
        assert_eq!(
            token_ids(&server, &admin, Some(status), &codes).await,
            ids,
            "{status} after three days"
        );
    }

    let code_field = server
        .graphql(
            Some(&admin),
            "{ healthCenterTokens { nodes { code } } }",
            json!({}),
        )
        .await;
    assert!(
        code_field.get("errors").is_some(),
        "a token has no code field: {code_field}"
    );
}

#[tokio::test]
async fn revoked_token_fails_upload() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::PrefectureAdmin, Some(13)).await;
    let code = issue(&server, &admin, 13, 1, 24).await.remove(0);
    let id = newest_token_id(&server, &admin, 13).await;

    let revoked = data(&server, Some(&admin), REVOKE, json!({ "id": id })).await;
    assert_eq!(revoked["revokeHealthCenterToken"]["status"], "REVOKED");
    assert!(revoked["revokeHealthCenterToken"]["revokedAt"].is_string());

    let user = server.login(Some(13)).await;
    let keys = daily_keys(1, &[1], server.clock.now());
    let upload = server.upload_keys(&user, &code, &keys).await;
    assert_eq!(error_code(&upload), "BAD_USER_INPUT", "{upload}");
    assert_eq!(extension(&upload, "reason"), "REVOKED_TOKEN", "{upload}");
    assert_eq!(stored_uploads(&server).await, 0);

    let again = server
        .graphql(Some(&admin), REVOKE, json!({ "id": id }))
        .await;
    assert_eq!(error_code(&again), "CONFLICT", "{again}");
}

#[tokio::test]
async fn revoke_conflicts_on_spent_or_expired() {
    let server = TestServer::start().await;
    let admin = server.admin_token(Role::PrefectureAdmin, Some(13)).await;
    let spent_code = issue(&server, &admin, 13, 1, 48).await.remove(0);
    let spent = newest_token_id(&server, &admin, 13).await;
    issue(&server, &admin, 13, 1, 1).await;
    let expiring = newest_token_id(&server, &admin, 13).await;

    let user = server.login(Some(13)).await;
    let keys = daily_keys(1, &[1], server.clock.now());
    let upload = server.upload_keys(&user, &spent_code, &keys).await;
    assert_eq!(
        upload["data"]["uploadDiagnosisKeys"]["keyCount"], 1,
        "{upload}"
    );
    server.clock.advance(chrono::Duration::hours(2));
    // Access tokens last an hour, so the admin logs in again.
    let admin = server.admin_token(Role::PrefectureAdmin, Some(13)).await;

    for (case, id) in [("redeemed", &spent), ("expired", &expiring)] {
        let body = server
            .graphql(Some(&admin), REVOKE, json!({ "id": id }))
            .await;
        assert_eq!(error_code(&body), "CONFLICT", "{case}: {body}");
        assert!(error_message(&body).contains(case), "{case}: {body}");
    }
    let unknown = server
        .graphql(
            Some(&admin),
            REVOKE,
            json!({ "id": uuid::Uuid::now_v7().to_string() }),
        )
        .await;
    assert_eq!(error_code(&unknown), "NOT_FOUND", "{unknown}");
}

#[tokio::test]
async fn admin_login_rejects_wrong_password() {
    let server = TestServer::start().await;
    let root = server.admin_token(Role::SuperAdmin, None).await;
    let email = "tokyo@example.jp";
    create_admin(&server, &root, email, "PREFECTURE_ADMIN", Some(13)).await;

    let wrong = server
        .graphql(
            None,
            ADMIN_LOGIN,
            json!({ "e": email, "p": "not the password" }),
        )
        .await;
    assert_eq!(error_code(&wrong), "UNAUTHENTICATED", "{wrong}");
    assert_eq!(wrong["data"], Value::Null);
    let unknown = server
        .graphql(
            None,
            ADMIN_LOGIN,
            json!({ "e": "nobody@example.jp", "p": PASSWORD }),
        )
        .await;
    assert_eq!(error_code(&unknown), "UNAUTHENTICATED", "{unknown}");
    assert_eq!(
        error_message(&unknown),
        error_message(&wrong),
        "the answer does not reveal which emails exist"
    );

    let (access, _) = admin_login(&server, " Tokyo@Example.JP ", PASSWORD).await;
    assert_eq!(viewer(&server, &access).await.1, email);
}

#[tokio::test]
async fn admin_login_limits_failed_attempts() {
    let server = TestServer::start_with(|config| {
        config.admin_login_attempt_limit = 3;
        config.admin_login_delay_step = std::time::Duration::from_millis(1);
    })
    .await;
    let root = server.admin_token(Role::SuperAdmin, None).await;
    let email = "tokyo@example.jp";
    create_admin(&server, &root, email, "PREFECTURE_ADMIN", Some(13)).await;

    let wrong = json!({ "e": email, "p": "not the password" });
    for attempt in 1..=3 {
        let body = server.graphql(None, ADMIN_LOGIN, wrong.clone()).await;
        assert_eq!(
            error_code(&body),
            "UNAUTHENTICATED",
            "attempt {attempt}: {body}"
        );
    }
    let limited = server.graphql(None, ADMIN_LOGIN, wrong).await;
    assert_eq!(error_code(&limited), "RATE_LIMITED", "{limited}");
    let retry_after = extension(&limited, "retryAfterSeconds")
        .as_u64()
        .unwrap_or_else(|| panic!("retryAfterSeconds is a number: {limited}"));
    assert!(
        (1..=15 * 60).contains(&retry_after),
        "retry within the 15-minute window, not {retry_after}"
    );

    let correct = server
        .graphql(None, ADMIN_LOGIN, json!({ "e": email, "p": PASSWORD }))
        .await;
    assert_eq!(
        error_code(&correct),
        "RATE_LIMITED",
        "the right password waits for the window too: {correct}"
    );
}

#[tokio::test]
async fn racing_issues_stay_within_quota() {
    let server = TestServer::start_with(|config| config.token_daily_quota = 5).await;
    let admin = server.admin_token(Role::SuperAdmin, None).await;
    // Several rounds, one prefecture each, because one round may not overlap the transactions.
    for prefecture in 1..=5 {
        let calls = (0..6).map(|_| {
            server.graphql(
                Some(&admin),
                ISSUE,
                json!({ "p": prefecture, "n": 3, "h": 24 }),
            )
        });
        let bodies = futures::future::join_all(calls).await;
        let listed = data(
            &server,
            Some(&admin),
            "query($p: Int!) { healthCenterTokens(prefecture: $p, first: 100) { nodes { id } } }",
            json!({ "p": prefecture }),
        )
        .await;
        let stored = node_strings(&listed["healthCenterTokens"], "id").len();
        let answers: Vec<&Value> = bodies
            .iter()
            .map(|body| &body["errors"][0]["extensions"]["code"])
            .collect();
        assert_eq!(stored, 3, "prefecture {prefecture}: {answers:?}");
    }
}
