//! Cursor pagination shared by the dashboard's lists.
//!
//! A cursor is the base64 of the last item's sort key, opaque to clients.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

use crate::error::{Error, Result};

/// Items returned when a client does not ask for a number.
pub const DEFAULT_PAGE_SIZE: u64 = 20;
/// Most items one page may return.
pub const MAX_PAGE_SIZE: u64 = 100;

/// A checked request for one page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub first: u64,
    /// The sort key after which the page starts.
    pub after: Option<String>,
}

impl PageRequest {
    /// Checks `first` (1 to 100, default 20) and decodes `after`.
    pub fn parse(first: Option<i32>, after: Option<&str>) -> Result<Self> {
        let first = match first {
            None => DEFAULT_PAGE_SIZE,
            Some(value @ 1..) if value as u64 <= MAX_PAGE_SIZE => value as u64,
            Some(value) => {
                return Err(Error::invalid(
                    "first",
                    format!("invalid first {value}: expected 1 to {MAX_PAGE_SIZE}"),
                ))
            }
        };
        let after = after
            .map(|cursor| {
                URL_SAFE_NO_PAD
                    .decode(cursor)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| Error::invalid("after", format!("invalid cursor {cursor:?}")))
            })
            .transpose()?;
        Ok(PageRequest { first, after })
    }

    /// Parses the `after` key as a number, for lists sorted by a numeric id.
    pub fn after_number(&self) -> Result<Option<i64>> {
        self.after
            .as_deref()
            .map(|key| {
                key.parse()
                    .map_err(|_| Error::invalid("after", "invalid cursor"))
            })
            .transpose()
    }

    /// Parses the `after` key as a UUID, for lists sorted by a time-ordered UUID.
    pub fn after_uuid(&self) -> Result<Option<uuid::Uuid>> {
        self.after
            .as_deref()
            .map(|key| {
                key.parse()
                    .map_err(|_| Error::invalid("after", "invalid cursor"))
            })
            .transpose()
    }
}

/// One page of items and whether more follow.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next_page: bool,
}

impl<T> Page<T> {
    /// Builds a page from up to `first + 1` fetched rows. The extra row only shows that more follow.
    pub fn from_rows(mut rows: Vec<T>, request: &PageRequest) -> Self {
        let has_next_page = rows.len() as u64 > request.first;
        rows.truncate(request.first as usize);
        Page {
            items: rows,
            has_next_page,
        }
    }
}

/// Encodes a sort key as an opaque cursor.
pub fn cursor(key: impl ToString) -> String {
    URL_SAFE_NO_PAD.encode(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_first_and_cursor() {
        assert_eq!(PageRequest::parse(None, None).unwrap().first, 20);
        assert_eq!(PageRequest::parse(Some(100), None).unwrap().first, 100);
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(Some(101), None).is_err());
        assert!(PageRequest::parse(Some(-1), None).is_err());
        assert!(PageRequest::parse(None, Some("%%%")).is_err());
        let request = PageRequest::parse(None, Some(&cursor(42))).unwrap();
        assert_eq!(request.after_number().unwrap(), Some(42));
    }

    #[test]
    fn from_rows_detects_next_page() {
        let request = PageRequest {
            first: 2,
            after: None,
        };
        let page = Page::from_rows(vec![1, 2, 3], &request);
        assert_eq!(page.items, vec![1, 2]);
        assert!(page.has_next_page);
        assert!(!Page::from_rows(vec![1, 2], &request).has_next_page);
    }
}
