//! `schema.graphql` is the SDL the server serves.

use std::path::Path;

/// Fails when `schema.graphql` differs from the code's schema. With `UPDATE_SCHEMA=1` it rewrites
/// the file instead, for a deliberate schema change.
#[test]
fn schema_file_matches_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let generated = mamori::graphql::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == generated,
        "schema.graphql is out of date; review the change and run `UPDATE_SCHEMA=1 cargo test --test schema`"
    );
}

/// Every type and field the clients see has a description.
#[test]
fn schema_describes_every_type_and_field() {
    let sdl = mamori::graphql::sdl();
    let mut in_description = false;
    let mut described = false;
    let mut undocumented = Vec::new();
    for line in sdl.lines() {
        let trimmed = line.trim();
        if trimmed == "\"\"\"" {
            in_description = !in_description;
            described = !in_description;
            continue;
        }
        // A line that closes a field's argument list continues that field's declaration.
        if in_description || trimmed.is_empty() || trimmed.starts_with(')') {
            continue;
        }
        let declares_type = ["type ", "input ", "enum ", "scalar "]
            .iter()
            .any(|keyword| trimmed.starts_with(keyword));
        let declares_field = line.starts_with('\t') && trimmed != "}";
        if (declares_type || declares_field) && !described {
            undocumented.push(trimmed.to_owned());
        }
        described = false;
    }
    // The schema block only names the root types.
    undocumented.retain(|line| {
        !matches!(
            line.split(':').next(),
            Some("query" | "mutation" | "subscription")
        )
    });
    assert!(undocumented.is_empty(), "undocumented: {undocumented:#?}");
}
