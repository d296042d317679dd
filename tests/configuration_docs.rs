//! Keeps `docs/configuration.md` in step with the settings declared in `src/config.rs`.
//!
//! The test reads both files as text. It takes every `#[arg(…)]` attribute that has an
//! `env = "MAMORI_…"`, with its `default_value` or `default_value_t` and the field it annotates,
//! and compares them with the rows of the settings table in the document.

use std::collections::BTreeMap;

const CONFIG_SOURCE: &str = include_str!("../src/config.rs");
const CONFIG_DOC: &str = include_str!("../docs/configuration.md");

/// A setting as declared in `src/config.rs`.
#[derive(Debug)]
struct DeclaredSetting {
    flag: String,
    /// The value clap applies when neither the flag nor the variable is given.
    default: Option<String>,
}

/// A row of the settings table in `docs/configuration.md`.
#[derive(Debug)]
struct DocumentedSetting {
    flag: String,
    default_cell: String,
}

/// Returns the text inside the parentheses that open at `open`, skipping string literals.
fn balanced_parentheses(source: &str, open: usize) -> &str {
    let mut depth = 0;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, character) in source[open..].char_indices() {
        if in_string {
            match (escaped, character) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match character {
            '"' => in_string = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &source[open + 1..open + offset];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses in src/config.rs at byte {open}");
}

/// Splits attribute arguments at the commas that are not inside brackets or strings.
fn split_arguments(arguments: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut in_string = false;
    let mut start = 0;
    for (offset, character) in arguments.char_indices() {
        match character {
            '"' => in_string = !in_string,
            '(' | '[' if !in_string => depth += 1,
            ')' | ']' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => {
                parts.push(arguments[start..offset].trim());
                start = offset + 1;
            }
            _ => {}
        }
    }
    parts.push(arguments[start..].trim());
    parts.retain(|part| !part.is_empty());
    parts
}

/// Evaluates a `default_value_t` expression: an integer literal or a product of integer literals.
fn evaluate_integer(expression: &str) -> String {
    let product = expression
        .split('*')
        .map(|factor| {
            factor
                .trim()
                .replace('_', "")
                .parse::<u128>()
                .unwrap_or_else(|_| {
                    panic!(
                    "default_value_t = {expression} is not an integer or a product of integers; \
                     teach tests/configuration_docs.rs to read it"
                )
                })
        })
        .product::<u128>();
    product.to_string()
}

fn unquote(literal: &str) -> String {
    literal
        .trim()
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("expected a string literal, found {literal}"))
        .to_owned()
}

/// Returns the name of the field that follows an attribute, such as `data_dir`.
fn field_after(source: &str, attribute_end: usize) -> &str {
    let rest = &source[attribute_end..];
    let declaration = rest
        .find("pub ")
        .map(|start| &rest[start + 4..])
        .expect("every setting attribute is followed by a `pub` field");
    declaration
        .split(':')
        .next()
        .expect("a field declaration has a colon")
        .trim()
}

/// Reads every `#[arg(…)]` with an `env = "MAMORI_…"` from `src/config.rs`, by variable.
fn declared_settings() -> BTreeMap<String, DeclaredSetting> {
    let mut settings = BTreeMap::new();
    for (start, _) in CONFIG_SOURCE.match_indices("#[arg(") {
        let open = start + "#[arg".len();
        let arguments = balanced_parentheses(CONFIG_SOURCE, open);
        let mut env = None;
        let mut default = None;
        let mut long = None;
        for argument in split_arguments(arguments) {
            let (name, value) = match argument.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim())),
                None => (argument, None),
            };
            match (name, value) {
                ("env", Some(value)) => env = Some(unquote(value)),
                ("default_value", Some(value)) => default = Some(unquote(value)),
                ("default_value_t", Some(value)) => default = Some(evaluate_integer(value)),
                ("long", Some(value)) => long = Some(unquote(value)),
                ("long", None) => long = Some(String::new()),
                _ => {}
            }
        }
        let Some(env) = env.filter(|env| env.starts_with("MAMORI_")) else {
            continue;
        };
        let field = field_after(CONFIG_SOURCE, open + arguments.len());
        let flag = match long {
            Some(name) if !name.is_empty() => format!("--{name}"),
            Some(_) => format!("--{}", field.replace('_', "-")),
            None => panic!("{env} has no `long` flag; every setting needs one"),
        };
        let previous = settings.insert(env.clone(), DeclaredSetting { flag, default });
        assert!(
            previous.is_none(),
            "{env} is declared twice in src/config.rs"
        );
    }
    settings
}

/// Returns the text of the code span a Markdown table cell starts with, such as `1h`.
fn leading_code_span(cell: &str) -> Option<&str> {
    let inside = cell.strip_prefix('`')?;
    let length = inside.find('`')?;
    Some(&inside[..length])
}

/// Reads the rows of the settings table, whose first cell is a `MAMORI_…` variable.
fn documented_settings() -> BTreeMap<String, DocumentedSetting> {
    let mut settings = BTreeMap::new();
    for line in CONFIG_DOC.lines() {
        if !line.starts_with("| `MAMORI_") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert!(
            cells.len() >= 5,
            "settings row needs variable, flag, type, default and meaning cells: {line}"
        );
        let variable = leading_code_span(cells[0]).expect("variable cell has a code span");
        let flag = leading_code_span(cells[1])
            .unwrap_or_else(|| panic!("flag cell of {variable} has no code span"));
        let row = DocumentedSetting {
            flag: flag.to_owned(),
            default_cell: cells[3].to_owned(),
        };
        let previous = settings.insert(variable.to_owned(), row);
        assert!(
            previous.is_none(),
            "{variable} has two rows in docs/configuration.md"
        );
    }
    settings
}

/// Returns every `MAMORI_…` name mentioned anywhere in the document.
fn mentioned_variables() -> Vec<String> {
    let mut names = Vec::new();
    for (start, _) in CONFIG_DOC.match_indices("MAMORI_") {
        let name: String = CONFIG_DOC[start..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        names.push(name);
    }
    names
}

#[test]
fn source_parser_finds_known_settings() {
    let declared = declared_settings();
    assert!(declared.len() >= 20, "found only {declared:?}");
    let listen = &declared["MAMORI_LISTEN"];
    assert_eq!(listen.flag, "--listen");
    assert_eq!(listen.default.as_deref(), Some("127.0.0.1:8080"));
    let body = &declared["MAMORI_MAX_BODY_BYTES"];
    assert_eq!(body.default.as_deref(), Some("262144"));
    assert_eq!(declared["MAMORI_DATABASE_URL"].default, None);
}

#[test]
fn every_setting_has_a_documented_row() {
    let documented = documented_settings();
    let missing: Vec<String> = declared_settings()
        .into_keys()
        .filter(|name| !documented.contains_key(name))
        .collect();
    assert!(
        missing.is_empty(),
        "add a row to the table in docs/configuration.md for {missing:?}"
    );
}

#[test]
fn documented_variables_exist_in_code() {
    let declared = declared_settings();
    let mut unknown: Vec<String> = mentioned_variables()
        .into_iter()
        .filter(|name| !declared.contains_key(name))
        .collect();
    unknown.sort();
    unknown.dedup();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md names variables that src/config.rs does not declare: {unknown:?}"
    );
}

#[test]
fn documented_flags_match_code() {
    let documented = documented_settings();
    for (variable, declared) in declared_settings() {
        let Some(row) = documented.get(&variable) else {
            continue;
        };
        assert_eq!(row.flag, declared.flag, "flag of {variable}");
    }
}

#[test]
fn documented_defaults_match_code() {
    let documented = documented_settings();
    for (variable, declared) in declared_settings() {
        let Some(row) = documented.get(&variable) else {
            continue;
        };
        match &declared.default {
            Some(default) => assert_eq!(
                leading_code_span(&row.default_cell),
                Some(default.as_str()),
                "default of {variable}: the Default cell must start with `{default}`"
            ),
            None => assert!(
                row.default_cell.starts_with("unset"),
                "{variable} has no default in src/config.rs, so its Default cell must start \
                 with \"unset\" and say what happens then; it is {:?}",
                row.default_cell
            ),
        }
    }
}
