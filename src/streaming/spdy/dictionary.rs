//! The zlib dictionary SPDY/3 primes both header-compression contexts with.
//!
//! The spec gives it as 1,423 bytes: 65 common header tokens, each prefixed by
//! its length as a 32-bit big-endian integer (the shape of a name/value block),
//! followed by one run of status codes, reason phrases, dates and media types.
//! It is rebuilt here from that structure; a test pins its Adler-32 to the
//! dictionary id every SPDY/3 header block carries (0xe3c6a7c2).

use std::sync::OnceLock;

/// Tokens that appear length-prefixed at the start of the dictionary.
const TOKENS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The unprefixed tail of the dictionary, split only for readability.
const TAIL: [&str; 7] = [
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,public",
    "privatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
];

/// The SPDY/3 header-compression dictionary.
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut out = Vec::with_capacity(1423);
        for token in TOKENS {
            out.extend_from_slice(&(token.len() as u32).to_be_bytes());
            out.extend_from_slice(token.as_bytes());
        }
        for part in TAIL {
            out.extend_from_slice(part.as_bytes());
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adler-32 as zlib computes it, written out so the test does not trust
    /// the compressor it is checking.
    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn matches_spec_length_and_dictionary_id() {
        let dict = dictionary();
        assert_eq!(dict.len(), 1423);
        assert_eq!(&dict[..11], b"\0\0\0\x07options");
        assert!(dict.ends_with(b"utf-,*,enq=0."));
        assert_eq!(adler32(dict), 0xe3c6_a7c2);
    }
}
