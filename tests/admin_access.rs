//! Who may call which admin operation: the role × action table walked over real HTTP, phone
//! users and anonymous callers, the ceiling on managing admins, and deleted accounts.

mod common;

use common::{daily_keys, error_code, TestServer, UPLOAD_KEYS};
use mamori::auth::Role;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{json, Value};

/// The password `TestServer::admin_token` gives the accounts it creates.
const HARNESS_PASSWORD: &str = "correct horse battery staple";

/// A password for accounts the tests create through `createAdmin`.
const PASSWORD: &str = "another long passphrase";

/// An admin GraphQL operation. The list operations with an optional `prefecture` argument appear
/// twice, because the argument changes who may call them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Viewer,
    Admins,
    Admin,
    AuditLog,
    PrefectureNoticeHistory,
    HealthCenterTokens,
    HealthCenterTokensOfPrefecture,
    Stats,
    StatsOfPrefecture,
    CreateAdmin,
    DeleteAdmin,
    ChangePassword,
    PublishPrefectureNotice,
    WithdrawPrefectureNotice,
    IssueHealthCenterTokens,
    RevokeHealthCenterToken,
}

impl Operation {
    const ALL: [Operation; 16] = [
        Operation::Viewer,
        Operation::Admins,
        Operation::Admin,
        Operation::AuditLog,
        Operation::PrefectureNoticeHistory,
        Operation::HealthCenterTokens,
        Operation::HealthCenterTokensOfPrefecture,
        Operation::Stats,
        Operation::StatsOfPrefecture,
        Operation::CreateAdmin,
        Operation::DeleteAdmin,
        Operation::ChangePassword,
        Operation::PublishPrefectureNotice,
        Operation::WithdrawPrefectureNotice,
        Operation::IssueHealthCenterTokens,
        Operation::RevokeHealthCenterToken,
    ];

    /// Returns the field of `data` that contains the operation's result.
    fn field(self) -> &'static str {
        match self {
            Operation::Viewer => "viewer",
            Operation::Admins => "admins",
            Operation::Admin => "admin",
            Operation::AuditLog => "auditLog",
            Operation::PrefectureNoticeHistory => "prefectureNoticeHistory",
            Operation::HealthCenterTokens | Operation::HealthCenterTokensOfPrefecture => {
                "healthCenterTokens"
            }
            Operation::Stats | Operation::StatsOfPrefecture => "stats",
            Operation::CreateAdmin => "createAdmin",
            Operation::DeleteAdmin => "deleteAdmin",
            Operation::ChangePassword => "changePassword",
            Operation::PublishPrefectureNotice => "publishPrefectureNotice",
            Operation::WithdrawPrefectureNotice => "withdrawPrefectureNotice",
            Operation::IssueHealthCenterTokens => "issueHealthCenterTokens",
            Operation::RevokeHealthCenterToken => "revokeHealthCenterToken",
        }
    }

    fn is_mutation(self) -> bool {
        matches!(
            self,
            Operation::CreateAdmin
                | Operation::DeleteAdmin
                | Operation::ChangePassword
                | Operation::PublishPrefectureNotice
                | Operation::WithdrawPrefectureNotice
                | Operation::IssueHealthCenterTokens
                | Operation::RevokeHealthCenterToken
        )
    }
}

/// What a call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// A result that contains the target, when the operation has one.
    Allowed,
    /// A list without the target, because it lies outside the caller's prefecture.
    Hidden,
    Forbidden,
    /// The target exists, but the caller may not see it.
    NotFound,
}

/// A caller of the table: its role and the prefecture its calls name.
struct Actor {
    name: &'static str,
    role: Role,
    own_prefecture: Option<i16>,
    target_prefecture: i16,
}

const ACTORS: [Actor; 4] = [
    Actor {
        name: "SUPER_ADMIN",
        role: Role::SuperAdmin,
        own_prefecture: None,
        target_prefecture: 27,
    },
    Actor {
        name: "NATIONAL_ADMIN",
        role: Role::NationalAdmin,
        own_prefecture: None,
        target_prefecture: 27,
    },
    Actor {
        name: "PREFECTURE_ADMIN of 13",
        role: Role::PrefectureAdmin,
        own_prefecture: Some(13),
        target_prefecture: 13,
    },
    Actor {
        name: "PREFECTURE_ADMIN of 13",
        role: Role::PrefectureAdmin,
        own_prefecture: Some(13),
        target_prefecture: 27,
    },
];

use Outcome::{Allowed, Forbidden, Hidden, NotFound};

/// The expected outcome of each operation for each actor, in the order of [`ACTORS`].
#[rustfmt::skip]
const TABLE: [(Operation, [Outcome; 4]); 16] = [
    // Columns: SUPER_ADMIN on 27, NATIONAL_ADMIN on 27, PREFECTURE_ADMIN of 13 on 13, and on 27.
    (Operation::Viewer,                         [Allowed, Allowed, Allowed, Allowed]),
    (Operation::Admins,                         [Allowed, Allowed, Allowed, Hidden]),
    (Operation::Admin,                          [Allowed, Allowed, Allowed, NotFound]),
    (Operation::AuditLog,                       [Allowed, Allowed, Allowed, Hidden]),
    (Operation::PrefectureNoticeHistory,        [Allowed, Allowed, Allowed, Forbidden]),
    (Operation::HealthCenterTokens,             [Allowed, Allowed, Allowed, Hidden]),
    (Operation::HealthCenterTokensOfPrefecture, [Allowed, Allowed, Allowed, Forbidden]),
    (Operation::Stats,                          [Allowed, Allowed, Allowed, Allowed]),
    (Operation::StatsOfPrefecture,              [Allowed, Allowed, Allowed, Forbidden]),
    (Operation::CreateAdmin,                    [Allowed, Allowed, Allowed, Forbidden]),
    (Operation::DeleteAdmin,                    [Allowed, Allowed, Allowed, NotFound]),
    (Operation::ChangePassword,                 [Allowed, Allowed, Allowed, Allowed]),
    (Operation::PublishPrefectureNotice,        [Allowed, Allowed, Allowed, Forbidden]),
    (Operation::WithdrawPrefectureNotice,       [Allowed, Allowed, Allowed, NotFound]),
    (Operation::IssueHealthCenterTokens,        [Allowed, Allowed, Allowed, Forbidden]),
    (Operation::RevokeHealthCenterToken,        [Allowed, Allowed, Allowed, NotFound]),
];

/// What one call acts on: the id it passes, and a string that a result showing the target
/// contains.
#[derive(Default)]
struct Target {
    id: Option<String>,
    marker: Option<String>,
}

/// Sends a request and returns `data` of the response, panicking on any error.
async fn data(server: &TestServer, token: &str, query: &str, variables: Value) -> Value {
    let body = server.graphql(Some(token), query, variables).await;
    assert!(body.get("errors").is_none(), "{query}: {body}");
    body["data"].clone()
}

/// Creates a prefecture admin through `createAdmin` and returns its id.
async fn create_admin(server: &TestServer, setup: &str, prefecture: i16) -> String {
    let email = format!("{}@example.jp", uuid::Uuid::new_v4().simple());
    let data = data(
        server,
        setup,
        "mutation($input: CreateAdminInput!) { createAdmin(input: $input) { id } }",
        json!({ "input": {
            "email": email,
            "password": PASSWORD,
            "role": "PREFECTURE_ADMIN",
            "prefecture": prefecture,
        } }),
    )
    .await;
    data["createAdmin"]["id"].as_str().unwrap().to_owned()
}

/// Publishes a notice and returns its id and message.
async fn publish_notice(server: &TestServer, setup: &str, prefecture: i16) -> (String, String) {
    let message = format!("notice {}", uuid::Uuid::new_v4());
    let data = data(
        server,
        setup,
        "mutation($input: PublishPrefectureNoticeInput!) { publishPrefectureNotice(input: $input) { id } }",
        json!({ "input": { "prefecture": prefecture, "message": message } }),
    )
    .await;
    let id = data["publishPrefectureNotice"]["id"].as_str().unwrap();
    (id.to_owned(), message)
}

/// Issues one health-center token and returns its id, found as the newest of its prefecture.
async fn issue_token(server: &TestServer, setup: &str, prefecture: i16) -> String {
    data(
        server,
        setup,
        "mutation($input: IssueHealthCenterTokensInput!) { issueHealthCenterTokens(input: $input) { codes } }",
        json!({ "input": { "prefecture": prefecture, "count": 1, "validForHours": 24 } }),
    )
    .await;
    let data = data(
        server,
        setup,
        "query($p: Int!) { healthCenterTokens(prefecture: $p, first: 1) { nodes { id } } }",
        json!({ "p": prefecture }),
    )
    .await;
    data["healthCenterTokens"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Creates what `operation` acts on in `prefecture`, using the super admin token `setup`.
/// `role` is the caller's role, which `viewer` returns.
async fn prepare(
    server: &TestServer,
    setup: &str,
    operation: Operation,
    prefecture: i16,
    role: Role,
) -> Target {
    let id_target = |id: String| Target {
        id: Some(id.clone()),
        marker: Some(id),
    };
    let marker_only = |marker: String| Target {
        id: None,
        marker: Some(marker),
    };
    match operation {
        Operation::Viewer => marker_only(role.as_str().to_owned()),
        Operation::Admins | Operation::Admin | Operation::AuditLog | Operation::DeleteAdmin => {
            // The audit log shows the new admin's id as the target of its CREATE_ADMIN entry.
            id_target(create_admin(server, setup, prefecture).await)
        }
        Operation::PrefectureNoticeHistory => {
            marker_only(publish_notice(server, setup, prefecture).await.1)
        }
        Operation::WithdrawPrefectureNotice => {
            id_target(publish_notice(server, setup, prefecture).await.0)
        }
        Operation::HealthCenterTokens
        | Operation::HealthCenterTokensOfPrefecture
        | Operation::RevokeHealthCenterToken => {
            id_target(issue_token(server, setup, prefecture).await)
        }
        Operation::Stats | Operation::StatsOfPrefecture => marker_only("2026-11-20".to_owned()),
        Operation::CreateAdmin => {
            marker_only(format!("{}@example.jp", uuid::Uuid::new_v4().simple()))
        }
        Operation::PublishPrefectureNotice => {
            marker_only(format!("notice {}", uuid::Uuid::new_v4()))
        }
        Operation::ChangePassword | Operation::IssueHealthCenterTokens => Target::default(),
    }
}

/// Builds the query and variables of a call of `operation` on `target` in `prefecture`.
fn request(operation: Operation, prefecture: i16, target: &Target) -> (&'static str, Value) {
    let id = json!({ "id": target.id });
    let in_prefecture = json!({ "p": prefecture });
    match operation {
        Operation::Viewer => ("{ viewer { id role } }", json!({})),
        Operation::Admins => ("{ admins(first: 100) { nodes { id } } }", json!({})),
        Operation::Admin => ("query($id: ID!) { admin(id: $id) { id } }", id),
        Operation::AuditLog => ("{ auditLog(first: 100) { nodes { target } } }", json!({})),
        Operation::PrefectureNoticeHistory => (
            "query($p: Int!) { prefectureNoticeHistory(prefecture: $p, first: 100) { nodes { message } } }",
            in_prefecture,
        ),
        Operation::HealthCenterTokens => (
            "{ healthCenterTokens(first: 100) { nodes { id } } }",
            json!({}),
        ),
        Operation::HealthCenterTokensOfPrefecture => (
            "query($p: Int!) { healthCenterTokens(prefecture: $p, first: 100) { nodes { id } } }",
            in_prefecture,
        ),
        Operation::Stats => (
            r#"{ stats(from: "2026-11-20", to: "2026-11-20") { days { date } } }"#,
            json!({}),
        ),
        Operation::StatsOfPrefecture => (
            r#"query($p: Int!) { stats(prefecture: $p, from: "2026-11-20", to: "2026-11-20") { days { date } } }"#,
            in_prefecture,
        ),
        Operation::CreateAdmin => (
            "mutation($input: CreateAdminInput!) { createAdmin(input: $input) { email } }",
            json!({ "input": {
                "email": target.marker,
                "password": PASSWORD,
                "role": "PREFECTURE_ADMIN",
                "prefecture": prefecture,
            } }),
        ),
        Operation::DeleteAdmin => ("mutation($id: ID!) { deleteAdmin(id: $id) { id } }", id),
        Operation::ChangePassword => (
            "mutation($input: ChangePasswordInput!) { changePassword(input: $input) }",
            // The same password again, so the caller's password stays known to later rows.
            json!({ "input": {
                "currentPassword": HARNESS_PASSWORD,
                "newPassword": HARNESS_PASSWORD,
            } }),
        ),
        Operation::PublishPrefectureNotice => (
            "mutation($input: PublishPrefectureNoticeInput!) { publishPrefectureNotice(input: $input) { message } }",
            json!({ "input": { "prefecture": prefecture, "message": target.marker } }),
        ),
        Operation::WithdrawPrefectureNotice => (
            "mutation($id: ID!) { withdrawPrefectureNotice(id: $id) { id } }",
            id,
        ),
        Operation::IssueHealthCenterTokens => (
            "mutation($input: IssueHealthCenterTokensInput!) { issueHealthCenterTokens(input: $input) { codes } }",
            json!({ "input": { "prefecture": prefecture, "count": 1, "validForHours": 24 } }),
        ),
        Operation::RevokeHealthCenterToken => (
            "mutation($id: ID!) { revokeHealthCenterToken(id: $id) { id } }",
            id,
        ),
    }
}

/// Returns whether any string inside `value` equals `expected`.
fn contains_string(value: &Value, expected: &str) -> bool {
    match value {
        Value::String(text) => text == expected,
        Value::Array(items) => items.iter().any(|item| contains_string(item, expected)),
        Value::Object(fields) => fields.values().any(|item| contains_string(item, expected)),
        _ => false,
    }
}

/// Compares a response with the expected outcome and describes any difference.
fn check(outcome: Outcome, operation: Operation, target: &Target, body: &Value) -> Option<String> {
    let result = &body["data"][operation.field()];
    let code = body["errors"][0]["extensions"]["code"].as_str();
    let marker = target.marker.as_deref();
    let problem = match outcome {
        Allowed | Hidden if code.is_some() || result.is_null() => "an error or no result",
        Allowed if marker.is_some_and(|marker| !contains_string(result, marker)) => {
            "a result without the target"
        }
        Hidden if marker.is_some_and(|marker| contains_string(result, marker)) => {
            "the target, which is outside the caller's prefecture"
        }
        Forbidden if code != Some("FORBIDDEN") => "a response other than FORBIDDEN",
        NotFound if code != Some("NOT_FOUND") => "a response other than NOT_FOUND",
        Forbidden | NotFound if !result.is_null() => "a result besides the error",
        _ => return None,
    };
    Some(format!("expected {outcome:?}, got {problem}: {body}"))
}

/// Returns the id of the newest audit log entry. Every admin mutation records one in the
/// transaction of its change, so an unchanged id shows that a rejected mutation changed nothing.
async fn newest_audit_entry(server: &TestServer, setup: &str) -> Value {
    let data = data(
        server,
        setup,
        "{ auditLog(first: 1) { nodes { id } } }",
        json!({}),
    )
    .await;
    data["auditLog"]["nodes"][0]["id"].clone()
}

#[tokio::test]
async fn role_action_table_matches_server() {
    let server = TestServer::start().await;
    let setup = server.admin_token(Role::SuperAdmin, None).await;
    let mut tokens = Vec::new();
    for actor in &ACTORS {
        tokens.push(server.admin_token(actor.role, actor.own_prefecture).await);
    }

    let mut failures = Vec::new();
    for (operation, outcomes) in TABLE {
        for ((actor, token), outcome) in ACTORS.iter().zip(&tokens).zip(outcomes) {
            let prefecture = actor.target_prefecture;
            let target = prepare(&server, &setup, operation, prefecture, actor.role).await;
            let audit_before = newest_audit_entry(&server, &setup).await;
            let (query, variables) = request(operation, prefecture, &target);
            let body = server.graphql(Some(token), query, variables).await;

            let row = format!("{operation:?} by {} on prefecture {prefecture}", actor.name);
            if let Some(problem) = check(outcome, operation, &target, &body) {
                failures.push(format!("{row}: {problem}"));
            }
            let rejected = matches!(outcome, Forbidden | NotFound);
            if rejected
                && operation.is_mutation()
                && newest_audit_entry(&server, &setup).await != audit_before
            {
                failures.push(format!("{row}: the rejected mutation recorded an action"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Returns the names of the fields of `type <name>` in the SDL, without descriptions.
fn root_fields(schema: &str, name: &str) -> Vec<String> {
    let start = schema
        .find(&format!("type {name} {{"))
        .unwrap_or_else(|| panic!("schema.graphql has no type {name}"));
    let mut fields = Vec::new();
    let mut in_description = false;
    for line in schema[start..].lines().skip(1) {
        if line == "}" {
            break;
        }
        let trimmed = line.trim();
        if trimmed.starts_with("\"\"\"") {
            let one_line = trimmed.len() > 3 && trimmed.ends_with("\"\"\"");
            in_description ^= !one_line;
            continue;
        }
        let top_level = line.starts_with('\t') && !line.starts_with("\t\t");
        if in_description || !top_level {
            continue;
        }
        let field: String = trimmed
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if !field.is_empty() {
            fields.push(field);
        }
    }
    fields
}

#[tokio::test]
async fn table_covers_every_admin_operation() {
    let listed: Vec<Operation> = TABLE.iter().map(|(operation, _)| *operation).collect();
    assert_eq!(listed, Operation::ALL);

    let schema = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql is readable");
    let phone_and_public = [
        "me",
        "prefectures",
        "prefecture",
        "exportIndex",
        "login",
        "refreshSession",
        "updateProfile",
        "adminLogin",
        "uploadDiagnosisKeys",
        "withdrawDiagnosisKeys",
    ];
    let mut served = root_fields(&schema, "Query");
    served.extend(root_fields(&schema, "Mutation"));
    for name in [
        "me",
        "viewer",
        "admins",
        "createAdmin",
        "revokeHealthCenterToken",
    ] {
        assert!(served.iter().any(|field| field == name), "parsed {name}");
    }
    for field in &served {
        let in_table = Operation::ALL
            .iter()
            .any(|operation| operation.field() == field);
        let public = phone_and_public.contains(&field.as_str());
        assert!(
            in_table != public,
            "{field}: in table {in_table}, phone or public {public}"
        );
    }
    for operation in Operation::ALL {
        assert!(
            served.iter().any(|field| field == operation.field()),
            "{operation:?} is served"
        );
    }
}

#[tokio::test]
async fn phone_user_is_forbidden_admin_operations() {
    let server = TestServer::start().await;
    let setup = server.admin_token(Role::SuperAdmin, None).await;
    let user = server.login(Some(13)).await;
    for operation in Operation::ALL {
        let target = prepare(&server, &setup, operation, 13, Role::User).await;
        let audit_before = newest_audit_entry(&server, &setup).await;
        let (query, variables) = request(operation, 13, &target);
        let body = server.graphql(Some(&user), query, variables).await;
        assert_eq!(error_code(&body), "FORBIDDEN", "{operation:?}: {body}");
        assert_eq!(
            body["data"][operation.field()],
            Value::Null,
            "{operation:?}"
        );
        assert_eq!(
            newest_audit_entry(&server, &setup).await,
            audit_before,
            "{operation:?} recorded an action"
        );
    }
}

/// Builds a call of a phone user's operation, with a fresh health-center code for uploads.
async fn phone_request(server: &TestServer, name: &str) -> (&'static str, Value) {
    match name {
        "me" => ("{ me { id } }", json!({})),
        "updateProfile" => (
            "mutation { updateProfile(input: {prefecture: 13}) { id } }",
            json!({}),
        ),
        "uploadDiagnosisKeys" => {
            let code = server.issue_tokens(13, 1).await.remove(0);
            let keys = daily_keys(1, &[1], server.clock.now());
            (
                UPLOAD_KEYS,
                json!({ "input": { "healthCenterToken": code, "keys": keys } }),
            )
        }
        "withdrawDiagnosisKeys" => ("mutation { withdrawDiagnosisKeys }", json!({})),
        "exportIndex" => ("{ exportIndex { generatedAt } }", json!({})),
        other => panic!("unknown phone operation {other}"),
    }
}

const PHONE_OPERATIONS: [&str; 4] = [
    "me",
    "updateProfile",
    "uploadDiagnosisKeys",
    "withdrawDiagnosisKeys",
];

#[tokio::test]
async fn admins_are_forbidden_phone_operations() {
    let server = TestServer::start().await;
    for (role, prefecture) in [
        (Role::SuperAdmin, None),
        (Role::NationalAdmin, None),
        (Role::PrefectureAdmin, Some(13)),
    ] {
        let admin = server.admin_token(role, prefecture).await;
        for name in PHONE_OPERATIONS {
            let (query, variables) = phone_request(&server, name).await;
            let body = server.graphql(Some(&admin), query, variables).await;
            assert_eq!(error_code(&body), "FORBIDDEN", "{role:?} {name}: {body}");
            assert_eq!(body["data"], Value::Null, "{role:?} {name}");
        }
    }
    let stored = mamori::entity::diagnosis_key_uploads::Entity::find()
        .count(&server.app.db)
        .await
        .unwrap();
    assert_eq!(stored, 0, "no admin upload was stored");
}

#[tokio::test]
async fn anonymous_caller_is_unauthenticated_everywhere() {
    let server = TestServer::start().await;
    let setup = server.admin_token(Role::SuperAdmin, None).await;
    for operation in Operation::ALL {
        let target = prepare(&server, &setup, operation, 13, Role::User).await;
        let (query, variables) = request(operation, 13, &target);
        let body = server.graphql(None, query, variables).await;
        assert_eq!(
            error_code(&body),
            "UNAUTHENTICATED",
            "{operation:?}: {body}"
        );
    }
    for name in PHONE_OPERATIONS.into_iter().chain(["exportIndex"]) {
        let (query, variables) = phone_request(&server, name).await;
        let body = server.graphql(None, query, variables).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{name}: {body}");
    }
}

/// Returns the id of the caller of `token`.
async fn viewer_id(server: &TestServer, token: &str) -> String {
    let data = data(server, token, "{ viewer { id } }", json!({})).await;
    data["viewer"]["id"].as_str().unwrap().to_owned()
}

/// Sends `createAdmin` as `token` with a fresh email and returns the response body.
async fn try_create_admin(
    server: &TestServer,
    token: &str,
    role: &str,
    prefecture: Option<i16>,
) -> (String, Value) {
    let email = format!("{}@example.jp", uuid::Uuid::new_v4().simple());
    let body = server
        .graphql(
            Some(token),
            "mutation($input: CreateAdminInput!) { createAdmin(input: $input) { email role } }",
            json!({ "input": {
                "email": email,
                "password": PASSWORD,
                "role": role,
                "prefecture": prefecture,
            } }),
        )
        .await;
    (email, body)
}

#[tokio::test]
async fn create_admin_respects_role_ceiling() {
    let server = TestServer::start().await;
    let root = server.admin_token(Role::SuperAdmin, None).await;
    let national = server.admin_token(Role::NationalAdmin, None).await;
    let prefecture = server.admin_token(Role::PrefectureAdmin, Some(13)).await;
    let cases = [
        ("SUPER_ADMIN", &root, "SUPER_ADMIN", None, None),
        ("SUPER_ADMIN", &root, "NATIONAL_ADMIN", None, None),
        ("SUPER_ADMIN", &root, "PREFECTURE_ADMIN", Some(27), None),
        (
            "NATIONAL_ADMIN",
            &national,
            "SUPER_ADMIN",
            None,
            Some("FORBIDDEN"),
        ),
        ("NATIONAL_ADMIN", &national, "NATIONAL_ADMIN", None, None),
        (
            "NATIONAL_ADMIN",
            &national,
            "PREFECTURE_ADMIN",
            Some(27),
            None,
        ),
        (
            "PREFECTURE_ADMIN 13",
            &prefecture,
            "SUPER_ADMIN",
            None,
            Some("FORBIDDEN"),
        ),
        (
            "PREFECTURE_ADMIN 13",
            &prefecture,
            "SUPER_ADMIN",
            Some(13),
            Some("FORBIDDEN"),
        ),
        (
            "PREFECTURE_ADMIN 13",
            &prefecture,
            "NATIONAL_ADMIN",
            None,
            Some("FORBIDDEN"),
        ),
        (
            "PREFECTURE_ADMIN 13",
            &prefecture,
            "NATIONAL_ADMIN",
            Some(13),
            Some("FORBIDDEN"),
        ),
        (
            "PREFECTURE_ADMIN 13",
            &prefecture,
            "PREFECTURE_ADMIN",
            Some(27),
            Some("FORBIDDEN"),
        ),
        (
            "PREFECTURE_ADMIN 13",
            &prefecture,
            "PREFECTURE_ADMIN",
            Some(13),
            None,
        ),
    ];
    for (caller, token, role, new_prefecture, expected) in cases {
        let case = format!("{caller} creates {role} of {new_prefecture:?}");
        let (email, body) = try_create_admin(&server, token, role, new_prefecture).await;
        match expected {
            None => {
                assert!(body.get("errors").is_none(), "{case}: {body}");
                assert_eq!(body["data"]["createAdmin"]["email"], email, "{case}");
                assert_eq!(body["data"]["createAdmin"]["role"], role, "{case}");
            }
            Some(code) => {
                assert_eq!(error_code(&body), code, "{case}: {body}");
                let admins = data(
                    &server,
                    &root,
                    "{ admins(first: 100) { nodes { email } } }",
                    json!({}),
                )
                .await;
                assert!(
                    !contains_string(&admins, &email),
                    "{case}: the account exists"
                );
            }
        }
    }
}

#[tokio::test]
async fn delete_admin_respects_role_ceiling() {
    let server = TestServer::start().await;
    let root = server.admin_token(Role::SuperAdmin, None).await;
    let national = server.admin_token(Role::NationalAdmin, None).await;
    let prefecture = server.admin_token(Role::PrefectureAdmin, Some(13)).await;
    let other_super = viewer_id(&server, &server.admin_token(Role::SuperAdmin, None).await).await;
    let other_national = viewer_id(
        &server,
        &server.admin_token(Role::NationalAdmin, None).await,
    )
    .await;
    let osaka = create_admin(&server, &root, 27).await;
    let tokyo = create_admin(&server, &root, 13).await;

    // A prefecture admin cannot see national accounts or other prefectures' accounts, so
    // they are not found rather than forbidden.
    let rejected = [
        ("NATIONAL_ADMIN", &national, &other_super, "FORBIDDEN"),
        (
            "PREFECTURE_ADMIN 13",
            &prefecture,
            &other_super,
            "NOT_FOUND",
        ),
        (
            "PREFECTURE_ADMIN 13",
            &prefecture,
            &other_national,
            "NOT_FOUND",
        ),
        ("PREFECTURE_ADMIN 13", &prefecture, &osaka, "NOT_FOUND"),
    ];
    for (caller, token, id, code) in rejected {
        let body = server
            .graphql(
                Some(token),
                "mutation($id: ID!) { deleteAdmin(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(error_code(&body), code, "{caller} deletes {id}: {body}");
        let still = data(
            &server,
            &root,
            "query($id: ID!) { admin(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
        assert_eq!(still["admin"]["id"], json!(id), "{caller} deleted {id}");
    }

    let allowed = [
        ("PREFECTURE_ADMIN 13", &prefecture, &tokyo),
        ("NATIONAL_ADMIN", &national, &other_national),
        ("SUPER_ADMIN", &root, &other_super),
    ];
    for (caller, token, id) in allowed {
        let body = server
            .graphql(
                Some(token),
                "mutation($id: ID!) { deleteAdmin(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(
            body["data"]["deleteAdmin"]["id"],
            json!(id),
            "{caller}: {body}"
        );
        let deleted = server
            .graphql(
                Some(&root),
                "query($id: ID!) { admin(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(error_code(&deleted), "NOT_FOUND", "{caller} deleted {id}");
    }
}

#[tokio::test]
async fn deleted_admin_token_is_rejected() {
    let server = TestServer::start().await;
    let root = server.admin_token(Role::SuperAdmin, None).await;
    let (email, created) = try_create_admin(&server, &root, "NATIONAL_ADMIN", None).await;
    assert!(created.get("errors").is_none(), "{created}");
    let login = server
        .graphql(
            None,
            "mutation($e: String!, $p: String!) { adminLogin(email: $e, password: $p) { accessToken refreshToken } }",
            json!({ "e": email, "p": PASSWORD }),
        )
        .await;
    let session = &login["data"]["adminLogin"];
    let token = session["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{login}"));
    let id = viewer_id(&server, token).await;

    let deleted = server
        .graphql(
            Some(&root),
            "mutation($id: ID!) { deleteAdmin(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(deleted["data"]["deleteAdmin"]["id"], json!(id), "{deleted}");

    // The access token has not expired, but the account behind it is gone.
    for (query, variables) in [
        ("{ viewer { id } }", json!({})),
        ("{ admins { nodes { id } } }", json!({})),
        (
            "mutation($input: PublishPrefectureNoticeInput!) { publishPrefectureNotice(input: $input) { id } }",
            json!({ "input": { "prefecture": 13, "message": "from a deleted account" } }),
        ),
    ] {
        let body = server.graphql(Some(token), query, variables).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{query}: {body}");
    }
    let refreshed = server
        .graphql(
            None,
            "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken } }",
            json!({ "t": session["refreshToken"] }),
        )
        .await;
    assert_eq!(error_code(&refreshed), "UNAUTHENTICATED", "{refreshed}");
}
