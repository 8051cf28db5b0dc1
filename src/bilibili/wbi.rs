//! WBI signing of Bilibili web API requests (`w_rid`, `wts`), required by
//! `getDanmuInfo` since 2025-05-26.
//!
//! Algorithm and test vectors: bilibili-API-collect `docs/misc/sign/wbi.md`
//! (its JavaScript demo encodes with `encodeURIComponent` after dropping
//! `!'()*` from values); acgnhiki/blrec `src/blrec/bili/wbi.py` (tests);
//! xfgryujk/blivedm issue #84 (a real 2026-04 getDanmuInfo signature).
//!
//! 1. `img_key`/`sub_key` = file stems of nav's `data.wbi_img.img_url`/`sub_url`.
//! 2. `mixin_key` = the first 32 of `(img_key + sub_key)[MIXIN_KEY_ENC_TAB[i]]`.
//! 3. Add `wts` (Unix seconds), sort by key, drop `!'()*` from values,
//!    percent-encode like `encodeURIComponent`, join `k=v` with `&`.
//! 4. `w_rid` = md5 hex of that query followed by `mixin_key`.

use md5::{Digest, Md5};
use serde_json::Value;

/// The reordering table (wbi.md; only the first 32 entries take part).
pub const MIXIN_KEY_ENC_TAB: [u8; 64] = [
    46, 47, 18, 2, 53, 8, 23, 32, 15, 50, 10, 31, 58, 3, 45, 35, 27, 43, 5, 49, 33, 9, 42, 19, 29,
    28, 14, 39, 12, 38, 41, 13, 37, 48, 7, 16, 24, 55, 40, 61, 26, 17, 0, 1, 60, 51, 30, 4, 22, 25,
    54, 21, 56, 59, 6, 63, 57, 62, 11, 36, 20, 34, 44, 52,
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WbiError {
    #[error("img_key + sub_key must be 64 ASCII characters")]
    BadKeys,
    #[error("nav's data.wbi_img.img_url/sub_url are missing")]
    NoKeysInNav,
    #[error("the query has no {0}")]
    Missing(&'static str),
    #[error("the query repeats the parameter {0}")]
    Repeated(String),
    #[error("the query is not valid percent-encoded UTF-8")]
    BadEncoding,
    #[error("w_rid does not match")]
    Mismatch,
}

/// The file stem of a key URL: `…/bfs/wbi/7cd08….png` → `7cd08…`.
pub fn key_from_url(url: &str) -> &str {
    let name = url.rsplit('/').next().unwrap_or(url);
    name.split('.').next().unwrap_or(name)
}

/// The signing key derived from the two keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WbiKeys {
    mixin: String,
}

impl WbiKeys {
    pub fn new(img_key: &str, sub_key: &str) -> Result<WbiKeys, WbiError> {
        let raw = format!("{img_key}{sub_key}");
        if raw.len() != 64 || !raw.is_ascii() {
            return Err(WbiError::BadKeys);
        }
        let raw = raw.as_bytes();
        let mixin = MIXIN_KEY_ENC_TAB[..32]
            .iter()
            .map(|&i| raw[i as usize] as char)
            .collect();
        Ok(WbiKeys { mixin })
    }

    /// From a `x/web-interface/nav` answer (logged in or not: code -101 still carries the keys).
    pub fn from_nav(nav: &Value) -> Result<WbiKeys, WbiError> {
        let img = nav["data"]["wbi_img"]["img_url"].as_str();
        let sub = nav["data"]["wbi_img"]["sub_url"].as_str();
        match (img, sub) {
            (Some(i), Some(s)) => WbiKeys::new(key_from_url(i), key_from_url(s)),
            _ => Err(WbiError::NoKeysInNav),
        }
    }

    pub fn mixin_key(&self) -> &str {
        &self.mixin
    }

    /// `w_rid` for these parameters (without `wts`) at `wts`.
    pub fn w_rid(&self, params: &[(&str, &str)], wts: u64) -> String {
        let wts = wts.to_string();
        let mut all: Vec<(&str, &str)> = params.to_vec();
        all.push(("wts", &wts));
        self.w_rid_of(&all)
    }

    /// `params` (without `wts`/`w_rid`) signed: the query to send, the original
    /// parameters in their order followed by `w_rid` and `wts`.
    pub fn sign(&self, params: &[(&str, &str)], wts: u64) -> String {
        let w_rid = self.w_rid(params, wts);
        let mut q: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
            .collect();
        q.push(format!("w_rid={w_rid}"));
        q.push(format!("wts={wts}"));
        q.join("&")
    }

    /// Checks a received query string (without `?`); returns its `wts` for the
    /// caller's freshness check.
    pub fn verify(&self, query: &str) -> Result<u64, WbiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let (k, v) = (decode_component(k)?, decode_component(v)?);
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(WbiError::Repeated(k));
            }
            pairs.push((k, v));
        }
        let w_rid = match pairs.iter().position(|(k, _)| k == "w_rid") {
            Some(i) => pairs.remove(i).1,
            None => return Err(WbiError::Missing("w_rid")),
        };
        let wts = pairs
            .iter()
            .find(|(k, _)| k == "wts")
            .ok_or(WbiError::Missing("wts"))?
            .1
            .parse::<u64>()
            .map_err(|_| WbiError::Missing("wts"))?;
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if self.w_rid_of(&refs).eq_ignore_ascii_case(&w_rid) {
            Ok(wts)
        } else {
            Err(WbiError::Mismatch)
        }
    }

    fn w_rid_of(&self, params: &[(&str, &str)]) -> String {
        let s = format!("{}{}", signing_query(params), self.mixin);
        Md5::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The query that is hashed: sorted by key, values without `!'()*`, both encoded.
pub fn signing_query(params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params.to_vec();
    // JS sorts by UTF-16 code units; the same as bytes for the ASCII keys used
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    sorted
        .iter()
        .map(|(k, v)| {
            let v: String = v.chars().filter(|c| !"!'()*".contains(*c)).collect();
            format!("{}={}", encode_component(k), encode_component(&v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// JavaScript's `encodeURIComponent`: UTF-8, upper-case hex; leaves
/// `A–Z a–z 0–9 - _ . ! ~ * ' ( )` alone (the last five never reach it in a
/// signed value), so a space is `%20`, never `+`.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decoding of a received query part (`+` read as a space, as form
/// decoders do).
pub fn decode_component(s: &str) -> Result<String, WbiError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or(WbiError::BadEncoding)?;
                let hex = std::str::from_utf8(hex).map_err(|_| WbiError::BadEncoding)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| WbiError::BadEncoding)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| WbiError::BadEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IMG: &str = "7cd084941338484aae1ad9425b84077c";
    const SUB: &str = "4932caff0ff746eab6f01bf08b70ac45";

    fn keys() -> WbiKeys {
        WbiKeys::new(IMG, SUB).unwrap()
    }

    #[test]
    fn mixin_key_of_the_documented_keys() {
        // wbi.md; blrec test_make_key
        assert_eq!(keys().mixin_key(), "ea1db124af3c7062474693fa704f4ff8");
        assert_eq!(WbiKeys::new("short", SUB), Err(WbiError::BadKeys));
    }

    #[test]
    fn keys_from_the_nav_answer() {
        // wbi.md's not-logged-in nav answer
        let nav = json!({"code":-101,"message":"账号未登录","ttl":1,"data":{"isLogin":false,"wbi_img":{"img_url":"https://i0.hdslb.com/bfs/wbi/7cd084941338484aae1ad9425b84077c.png","sub_url":"https://i0.hdslb.com/bfs/wbi/4932caff0ff746eab6f01bf08b70ac45.png"}}});
        assert_eq!(WbiKeys::from_nav(&nav).unwrap(), keys());
        assert_eq!(
            WbiKeys::from_nav(&json!({"code":0})),
            Err(WbiError::NoKeysInNav)
        );
        assert_eq!(key_from_url("https://i0.hdslb.com/bfs/wbi/abc.png"), "abc");
    }

    #[test]
    fn documented_signature() {
        // wbi.md: {foo:'114', bar:'514', zab:1919810} at wts 1702204169
        let p = [("foo", "114"), ("bar", "514"), ("zab", "1919810")];
        assert_eq!(
            keys().w_rid(&p, 1702204169),
            "8f6f2b5b3d485fe1886cec6a0be8c5d4"
        );
        assert_eq!(
            keys().sign(&p, 1702204169),
            "foo=114&bar=514&zab=1919810&w_rid=8f6f2b5b3d485fe1886cec6a0be8c5d4&wts=1702204169"
        );
    }

    #[test]
    fn real_get_danmu_info_signature() {
        // blivedm #84 (2026-04-23): id=5553263&type=0&wts=1776925721
        let p = [("id", "5553263"), ("type", "0")];
        assert_eq!(
            keys().w_rid(&p, 1776925721),
            "2662a4f8479c442aa069cef32d60394b"
        );
    }

    #[test]
    fn encoding_like_encode_uri_component() {
        // blrec test_encode_value / test_build_query
        assert_eq!(
            signing_query(&[("foo", ")-_-( F**' 哔~!")]),
            "foo=-_-%20F%20%E5%93%94~"
        );
        let p = [("foo", ")-_-( F**' 哔~!"), ("bar", "2333")];
        assert_eq!(
            keys().w_rid(&p, 1748867128),
            "6ba96e28a3f09b40e704f1e4b4f8e3e3"
        );
        // wbi.md: upper-case hex, %20 for spaces
        assert_eq!(
            signing_query(&[
                ("foo", "one one four"),
                ("bar", "五一四"),
                ("baz", "1919810")
            ]),
            "bar=%E4%BA%94%E4%B8%80%E5%9B%9B&baz=1919810&foo=one%20one%20four"
        );
        assert_eq!(encode_component("a/b?c=d&e+f"), "a%2Fb%3Fc%3Dd%26e%2Bf");
    }

    #[test]
    fn verify_accepts_what_sign_makes_and_nothing_else() {
        let k = keys();
        let p = [("id", "5553263"), ("type", "0"), ("web_location", "444.8")];
        let q = k.sign(&p, 1776925721);
        assert_eq!(k.verify(&q), Ok(1776925721));
        // the real signed query from blivedm #84, in any order
        assert_eq!(
            k.verify("wts=1776925721&id=5553263&w_rid=2662a4f8479c442aa069cef32d60394b&type=0"),
            Ok(1776925721)
        );
        // values with characters that are dropped or escaped
        let odd = [("q", "a b(!)~é")];
        assert!(k.verify(&k.sign(&odd, 5)).is_ok());
        assert_eq!(
            k.verify(&q.replace("444.8", "444.9")),
            Err(WbiError::Mismatch)
        );
        assert_eq!(
            k.verify(&q.replace("wts=1776925721", "wts=1776925722")),
            Err(WbiError::Mismatch)
        );
        assert_eq!(k.verify("id=1&type=0"), Err(WbiError::Missing("w_rid")));
        assert_eq!(k.verify("id=1&w_rid=00"), Err(WbiError::Missing("wts")));
        assert_eq!(
            k.verify("id=1&id=2&w_rid=0&wts=1"),
            Err(WbiError::Repeated("id".into()))
        );
        assert_eq!(k.verify("id=%ZZ&w_rid=0&wts=1"), Err(WbiError::BadEncoding));
        let other = WbiKeys::new(SUB, IMG).unwrap();
        assert_eq!(other.verify(&q), Err(WbiError::Mismatch));
    }
}
