//! The 47 prefectures of Japan by JIS X 0401 code, and their notices.

use std::fmt;

use crate::error::{Error, Result};

/// A prefecture code from 1 (Hokkaido) to 47 (Okinawa), checked at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrefectureCode(i16);

impl PrefectureCode {
    /// Parses a code from client input, naming `field` in the error.
    pub fn parse(value: i32, field: &str) -> Result<Self> {
        match i16::try_from(value) {
            Ok(code @ 1..=47) => Ok(PrefectureCode(code)),
            _ => Err(Error::invalid(
                field,
                format!("invalid prefecture code {value} in {field}: expected a JIS X 0401 code from 1 to 47"),
            )),
        }
    }

    /// Wraps a code read from the database, where only valid codes are stored.
    pub fn from_stored(value: i16) -> Option<Self> {
        (1..=47).contains(&value).then_some(PrefectureCode(value))
    }

    /// Returns the numeric code.
    pub fn get(self) -> i16 {
        self.0
    }

    /// Returns the Japanese and English names.
    pub fn names(self) -> (&'static str, &'static str) {
        PREFECTURES[usize::from(self.0.unsigned_abs()) - 1]
    }

    /// Iterates over all 47 prefectures in code order.
    pub fn all() -> impl Iterator<Item = PrefectureCode> {
        (1..=47).map(PrefectureCode)
    }
}

impl fmt::Display for PrefectureCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

/// Japanese and English names, indexed by code minus one.
const PREFECTURES: [(&str, &str); 47] = [
    ("北海道", "Hokkaido"),
    ("青森県", "Aomori"),
    ("岩手県", "Iwate"),
    ("宮城県", "Miyagi"),
    ("秋田県", "Akita"),
    ("山形県", "Yamagata"),
    ("福島県", "Fukushima"),
    ("茨城県", "Ibaraki"),
    ("栃木県", "Tochigi"),
    ("群馬県", "Gunma"),
    ("埼玉県", "Saitama"),
    ("千葉県", "Chiba"),
    ("東京都", "Tokyo"),
    ("神奈川県", "Kanagawa"),
    ("新潟県", "Niigata"),
    ("富山県", "Toyama"),
    ("石川県", "Ishikawa"),
    ("福井県", "Fukui"),
    ("山梨県", "Yamanashi"),
    ("長野県", "Nagano"),
    ("岐阜県", "Gifu"),
    ("静岡県", "Shizuoka"),
    ("愛知県", "Aichi"),
    ("三重県", "Mie"),
    ("滋賀県", "Shiga"),
    ("京都府", "Kyoto"),
    ("大阪府", "Osaka"),
    ("兵庫県", "Hyogo"),
    ("奈良県", "Nara"),
    ("和歌山県", "Wakayama"),
    ("鳥取県", "Tottori"),
    ("島根県", "Shimane"),
    ("岡山県", "Okayama"),
    ("広島県", "Hiroshima"),
    ("山口県", "Yamaguchi"),
    ("徳島県", "Tokushima"),
    ("香川県", "Kagawa"),
    ("愛媛県", "Ehime"),
    ("高知県", "Kochi"),
    ("福岡県", "Fukuoka"),
    ("佐賀県", "Saga"),
    ("長崎県", "Nagasaki"),
    ("熊本県", "Kumamoto"),
    ("大分県", "Oita"),
    ("宮崎県", "Miyazaki"),
    ("鹿児島県", "Kagoshima"),
    ("沖縄県", "Okinawa"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_hokkaido_to_okinawa() {
        assert_eq!(
            PrefectureCode::parse(1, "prefecture").unwrap().names().1,
            "Hokkaido"
        );
        assert_eq!(
            PrefectureCode::parse(13, "prefecture").unwrap().names().0,
            "東京都"
        );
        assert_eq!(
            PrefectureCode::parse(47, "prefecture").unwrap().names().1,
            "Okinawa"
        );
    }

    #[test]
    fn parse_rejects_codes_outside_range() {
        for value in [0, -1, 48, 70_000, i32::MIN] {
            let error = PrefectureCode::parse(value, "input.prefecture").unwrap_err();
            assert_eq!(error.code(), "BAD_USER_INPUT");
            assert!(error.to_string().contains(&value.to_string()), "{error}");
        }
    }

    #[test]
    fn all_lists_47_codes_in_order() {
        let codes: Vec<i16> = PrefectureCode::all().map(PrefectureCode::get).collect();
        assert_eq!(codes, (1..=47).collect::<Vec<i16>>());
    }
}
