//! Layer blob compression: sniffing the format from magic bytes and wrapping
//! the blob in the matching streaming decoder.

use std::io::{self, BufRead, BufReader, Cursor, Read};

/// Read buffer for layer blobs; large enough that decoding is never starved
/// by small reads from disk.
pub(crate) const BLOB_BUFFER: usize = 1 << 20;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (`application/vnd.oci.image.layer.v1.tar+gzip`, Docker's `tar.gzip`).
    Gzip,
    /// zstd (`application/vnd.oci.image.layer.v1.tar+zstd`).
    Zstd,
}

impl Compression {
    /// The format announced by the first bytes of a blob, if they are a known magic.
    pub fn from_magic(head: &[u8]) -> Option<Self> {
        if head.starts_with(GZIP_MAGIC) {
            Some(Compression::Gzip)
        } else if head.starts_with(ZSTD_MAGIC) {
            Some(Compression::Zstd)
        } else {
            None
        }
    }

    /// The format a layer media type claims, if it names one.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        if media_type.ends_with("+gzip") || media_type.ends_with(".gzip") {
            Some(Compression::Gzip)
        } else if media_type.ends_with("+zstd") || media_type.ends_with(".zstd") {
            Some(Compression::Zstd)
        } else if media_type.ends_with(".tar") || media_type.ends_with("tar") {
            Some(Compression::None)
        } else {
            None
        }
    }

    /// Decides the format from the blob's first bytes; the media type is only
    /// a hint, since registries and old tools get it wrong. Both compressed
    /// formats always start with their magic, so without one the blob is
    /// taken as a plain tar.
    pub fn sniff(head: &[u8], media_type: &str) -> Self {
        let sniffed = Compression::from_magic(head).unwrap_or(Compression::None);
        if let Some(claimed) = Compression::from_media_type(media_type) {
            if claimed != sniffed {
                tracing::debug!(
                    media_type,
                    ?claimed,
                    ?sniffed,
                    "layer media type disagrees with its content; trusting the content"
                );
            }
        }
        sniffed
    }

    /// Wraps a buffered compressed stream in the decoder for this format.
    pub fn decoder<'a, R: BufRead + 'a>(self, reader: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(reader),
            // Multi-member gzip is valid gzip; some tools write it.
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        })
    }
}

/// Buffers `reader`, sniffs its compression (see [`Compression::sniff`]) and
/// returns the format with a stream of the decompressed tar.
pub fn decompressor<'a, R: Read + 'a>(
    mut reader: R,
    media_type: &str,
) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    // Read the magic with a loop rather than one `fill_buf`: pipes and
    // sockets may hand out fewer bytes than asked for.
    let mut head = [0u8; ZSTD_MAGIC.len()];
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let compression = Compression::sniff(&head[..filled], media_type);
    let head = Cursor::new(head).take(filled as u64);
    let buffered = BufReader::with_capacity(BLOB_BUFFER, head.chain(reader));
    Ok((compression, compression.decoder(buffered)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const PAYLOAD: &[u8] = b"hello layer, hello layer, hello layer";

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn decode(blob: &[u8], media_type: &str) -> (Compression, io::Result<Vec<u8>>) {
        let (c, mut r) = decompressor(blob, media_type).unwrap();
        let mut out = Vec::new();
        let res = r.read_to_end(&mut out).map(|_| out);
        (c, res)
    }

    #[test]
    fn sniffs_magic_over_media_type() {
        let gz = gzip(PAYLOAD);
        let zst = zstd::encode_all(PAYLOAD, 3).unwrap();
        let tar_mt = "application/vnd.oci.image.layer.v1.tar";
        let gz_mt = "application/vnd.oci.image.layer.v1.tar+gzip";
        for (blob, want) in [
            (&gz, Compression::Gzip),
            (&zst, Compression::Zstd),
            (&PAYLOAD.to_vec(), Compression::None),
        ] {
            for mt in [
                tar_mt,
                gz_mt,
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "",
            ] {
                let (c, out) = decode(blob, mt);
                assert_eq!(c, want, "media type {mt}");
                assert_eq!(out.unwrap(), PAYLOAD);
            }
        }
    }

    #[test]
    fn media_type_hints() {
        let f = Compression::from_media_type;
        assert_eq!(
            f("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            f("application/vnd.oci.image.layer.v1.tar"),
            Some(Compression::None)
        );
        assert_eq!(
            f("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(f("application/octet-stream"), None);
    }

    #[test]
    fn short_and_empty_blobs() {
        let (c, out) = decode(b"", "");
        assert_eq!(c, Compression::None);
        assert!(out.unwrap().is_empty());
        let (c, out) = decode(b"\x1f", "");
        assert_eq!(c, Compression::None);
        assert_eq!(out.unwrap(), b"\x1f");
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let gz = gzip(&vec![7u8; 100_000]);
        let (c, out) = decode(&gz[..gz.len() / 2], "");
        assert_eq!(c, Compression::Gzip);
        assert!(out.is_err());
        // A missing trailer (crc and size) is caught too.
        let (_, out) = decode(&gz[..gz.len() - 4], "");
        assert!(out.is_err());
    }

    #[test]
    fn truncated_zstd_is_an_error() {
        let zst = zstd::encode_all(&vec![7u8; 100_000][..], 3).unwrap();
        let (c, out) = decode(&zst[..zst.len() - 3], "");
        assert_eq!(c, Compression::Zstd);
        assert!(out.is_err());
    }
}
