//! A guard against deeply nested GraphQL documents.
//!
//! async-graphql's parser recurses once per nesting level, so a document with a few thousand
//! nested brackets overflows the stack and aborts the process. This scan rejects such documents
//! before they are parsed.

/// Deepest bracket nesting accepted. The schema's own depth limit is 12 selection levels, so
/// real queries stay far below this.
pub const MAX_NESTING: usize = 64;

/// Returns whether `{`, `[` and `(` nest deeper than `limit` outside strings and comments.
pub fn nests_deeper_than(document: &str, limit: usize) -> bool {
    let bytes = document.as_bytes();
    let mut depth = 0usize;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'#' => {
                while index < bytes.len() && !matches!(bytes[index], b'\n' | b'\r') {
                    index += 1;
                }
            }
            b'"' if bytes[index..].starts_with(b"\"\"\"") => {
                index += 3;
                while index < bytes.len() && !bytes[index..].starts_with(b"\"\"\"") {
                    // An escaped triple quote inside a block string does not end it.
                    index += if bytes[index..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                index += 2;
            }
            b'"' => {
                index += 1;
                while index < bytes.len() && bytes[index] != b'"' {
                    index += if bytes[index] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        index += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_brackets_of_every_kind() {
        let deep = format!(
            "{{ prefecture(code: {}1{}) {{ code }} }}",
            "[".repeat(70),
            "]".repeat(70)
        );
        assert!(nests_deeper_than(&deep, MAX_NESTING));
        assert!(!nests_deeper_than(
            "{ prefectures { notice { prefecture { code } } } }",
            MAX_NESTING
        ));
    }

    #[test]
    fn ignores_brackets_in_strings_and_comments() {
        let brackets = "[".repeat(100);
        let quoted = format!(
            r#"mutation {{ publishPrefectureNotice(input: {{prefecture: 1, message: "{brackets}"}}) {{ id }} }}"#
        );
        assert!(!nests_deeper_than(&quoted, MAX_NESTING));
        let block = format!("{{ a(b: \"\"\"{brackets} \\\"\"\" {brackets}\"\"\") }}");
        assert!(!nests_deeper_than(&block, MAX_NESTING));
        let comment = format!("# {brackets}\n{{ prefectures {{ code }} }}");
        assert!(!nests_deeper_than(&comment, MAX_NESTING));
        let escaped = format!(r#"{{ a(b: "\" {brackets}") }}"#);
        assert!(!nests_deeper_than(&escaped, MAX_NESTING));
    }
}
