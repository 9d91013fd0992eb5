//! Name/value header blocks and the zlib contexts that carry them.
//!
//! SPDY/3 compresses every header block of a session with one zlib stream per
//! direction, primed with the spec's dictionary and sync-flushed after each
//! block. The two contexts therefore live as long as the session and must see
//! the blocks in wire order: the encoder is owned by the one task that writes
//! frames, the decoder by the one task that reads them.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::dictionary::dictionary;

/// Header name/value pairs; names are lowercase, several values of one name
/// are joined with NUL as the spec prescribes.
pub type Headers = Vec<(String, String)>;

/// Largest header block accepted once decompressed.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Why a header block could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("failed to compress header block")]
    Compress(#[source] flate2::CompressError),
    #[error("failed to decompress header block")]
    Decompress(#[source] flate2::DecompressError),
    #[error("header block exceeds {MAX_HEADER_BLOCK} bytes once decompressed")]
    TooLarge,
    #[error("malformed header block: {0}")]
    Malformed(&'static str),
}

/// The sending direction's zlib context.
pub struct HeaderEncoder {
    z: Compress,
}

impl HeaderEncoder {
    /// A fresh context primed with the SPDY/3 dictionary.
    pub fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        // A deflate stream that has not produced output always accepts a
        // dictionary; failure would mean allocation failure inside zlib.
        z.set_dictionary(dictionary())
            .expect("fresh deflate stream accepts a dictionary");
        Self { z }
    }

    /// Appends the compressed form of `headers` to `out`.
    pub fn encode(
        &mut self,
        headers: &[(String, String)],
        out: &mut Vec<u8>,
    ) -> Result<(), HeaderError> {
        let raw = encode_block(headers);
        let start = self.z.total_in();
        loop {
            out.reserve(64 + raw.len());
            let used = (self.z.total_in() - start) as usize;
            self.z
                .compress_vec(&raw[used..], out, FlushCompress::Sync)
                .map_err(HeaderError::Compress)?;
            // A sync flush is complete once all input is in and zlib stopped
            // short of filling the buffer.
            let used = (self.z.total_in() - start) as usize;
            if used == raw.len() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// The receiving direction's zlib context.
pub struct HeaderDecoder {
    z: Decompress,
}

impl HeaderDecoder {
    /// A fresh context; the dictionary is supplied when the stream asks for it.
    pub fn new() -> Self {
        Self {
            z: Decompress::new(true),
        }
    }

    /// Inflates one compressed header block and parses it.
    pub fn decode(&mut self, input: &[u8]) -> Result<Headers, HeaderError> {
        let mut out = Vec::with_capacity(64 + input.len() * 4);
        let start = self.z.total_in();
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.len());
            }
            let (in_before, out_before) = (self.z.total_in(), out.len());
            let used = (in_before - start) as usize;
            match self
                .z
                .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    // zlib checks the stream's dictionary id against ours here.
                    self.z
                        .set_dictionary(dictionary())
                        .map_err(HeaderError::Decompress)?;
                    continue;
                }
                Err(e) => return Err(HeaderError::Decompress(e)),
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(HeaderError::TooLarge);
            }
            let used = (self.z.total_in() - start) as usize;
            if used == input.len() && out.len() < out.capacity() {
                return parse_block(&out);
            }
            if self.z.total_in() == in_before && out.len() == out_before {
                return Err(HeaderError::Malformed("compressed data ended early"));
            }
        }
    }
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Serialises headers uncompressed: a count, then length-prefixed names and
/// values. Names are lowercased and repeated names merged, since SPDY/3
/// forbids both uppercase and duplicates.
pub fn encode_block(headers: &[(String, String)]) -> Vec<u8> {
    let mut merged: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push('\0');
                v.push_str(value);
            }
            None => merged.push((name, value.clone())),
        }
    }
    let mut raw = Vec::new();
    raw.extend_from_slice(&(merged.len() as u32).to_be_bytes());
    for (name, value) in &merged {
        raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
        raw.extend_from_slice(value.as_bytes());
    }
    raw
}

/// Parses an uncompressed header block. Names are lowercased on the way in
/// (Go's framer writes them lowercase already); non-UTF-8 bytes are replaced.
pub fn parse_block(mut raw: &[u8]) -> Result<Headers, HeaderError> {
    let count = take_u32(&mut raw)? as usize;
    if count > raw.len() / 8 {
        return Err(HeaderError::Malformed("header count exceeds block"));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = take_str(&mut raw)?.to_ascii_lowercase();
        let value = take_str(&mut raw)?;
        headers.push((name, value));
    }
    Ok(headers)
}

fn take_u32(raw: &mut &[u8]) -> Result<u32, HeaderError> {
    let (head, rest) = raw
        .split_first_chunk::<4>()
        .ok_or(HeaderError::Malformed("truncated length"))?;
    *raw = rest;
    Ok(u32::from_be_bytes(*head))
}

fn take_str(raw: &mut &[u8]) -> Result<String, HeaderError> {
    let len = take_u32(raw)? as usize;
    if len > raw.len() {
        return Err(HeaderError::Malformed("truncated name or value"));
    }
    let (bytes, rest) = raw.split_at(len);
    *raw = rest;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn block_layout_is_count_then_length_prefixed_pairs() {
        let raw = encode_block(&h(&[("streamType", "error")]));
        let mut want = vec![0, 0, 0, 1, 0, 0, 0, 10];
        want.extend_from_slice(b"streamtype");
        want.extend_from_slice(&[0, 0, 0, 5]);
        want.extend_from_slice(b"error");
        assert_eq!(raw, want);
    }

    #[test]
    fn repeated_names_are_merged_with_nul() {
        let raw = encode_block(&h(&[("a", "1"), ("A", "2")]));
        assert_eq!(parse_block(&raw).unwrap(), h(&[("a", "1\u{0}2")]));
    }

    #[test]
    fn first_block_carries_zlib_header_with_spdy3_dictionary_id() {
        let mut out = Vec::new();
        HeaderEncoder::new()
            .encode(&h(&[("port", "8080")]), &mut out)
            .unwrap();
        assert_eq!(out[0], 0x78, "deflate, 32 KiB window");
        assert_ne!(out[1] & 0x20, 0, "FDICT set");
        assert_eq!(out[2..6], [0xe3, 0xc6, 0xa7, 0xc2]);
        assert_eq!(
            out[out.len() - 4..],
            [0, 0, 0xff, 0xff],
            "sync flush marker"
        );
    }

    #[test]
    fn encoder_output_inflates_with_an_independent_context() {
        let headers = h(&[("streamtype", "stdin"), ("requestid", "0")]);
        let mut out = Vec::new();
        HeaderEncoder::new().encode(&headers, &mut out).unwrap();

        let mut z = Decompress::new(true);
        let mut raw = Vec::with_capacity(4096);
        let err = z
            .decompress_vec(&out, &mut raw, FlushDecompress::Sync)
            .unwrap_err();
        assert_eq!(err.needs_dictionary(), Some(0xe3c6_a7c2));
        z.set_dictionary(dictionary()).unwrap();
        let used = z.total_in() as usize;
        z.decompress_vec(&out[used..], &mut raw, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(raw, encode_block(&headers));
    }

    #[test]
    fn context_is_shared_across_blocks() {
        let (mut enc, mut dec) = (HeaderEncoder::new(), HeaderDecoder::new());
        let headers = h(&[
            ("streamtype", "stdout"),
            ("x-custom", "a long repeated value"),
        ]);
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let mut out = Vec::new();
            enc.encode(&headers, &mut out).unwrap();
            sizes.push(out.len());
            assert_eq!(dec.decode(&out).unwrap(), headers);
        }
        assert!(
            sizes[1] < sizes[0],
            "second block reuses the window: {sizes:?}"
        );
    }

    #[test]
    fn decoder_rejects_bombs_and_garbage() {
        let mut enc = HeaderEncoder::new();
        let mut out = Vec::new();
        enc.encode(&h(&[("big", &"x".repeat(MAX_HEADER_BLOCK))]), &mut out)
            .unwrap();
        assert!(matches!(
            HeaderDecoder::new().decode(&out),
            Err(HeaderError::TooLarge)
        ));
        assert!(HeaderDecoder::new()
            .decode(b"\x78\x9c\xff\xff\xff")
            .is_err());
        assert!(parse_block(&[0, 0, 0, 9, 0, 0, 0, 1]).is_err());
    }
}
