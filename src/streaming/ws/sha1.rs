//! SHA-1 (RFC 3174), needed only for the WebSocket handshake's
//! `Sec-WebSocket-Accept`. SHA-1 is broken for signatures; here it merely
//! proves the server read the client's key, which is all RFC 6455 asks of it.

/// The SHA-1 digest of `data`.
pub fn digest(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xefcd_ab89,
        0x98ba_dcfe,
        0x1032_5476,
        0xc3d2_e1f0,
    ];
    let bit_len = (data.len() as u64).wrapping_mul(8);
    // Message, 0x80, zeros up to 56 mod 64, then the length in bits.
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        compress(&mut h, block);
    }
    let mut out = [0u8; 20];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn compress(h: &mut [u32; 5], block: &[u8]) {
    let mut w = [0u32; 80];
    for (i, c) in block.chunks_exact(4).enumerate() {
        w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
    }
    for t in 16..80 {
        w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
    }
    let [mut a, mut b, mut c, mut d, mut e] = *h;
    for (t, wt) in w.iter().enumerate() {
        let (f, k) = match t {
            0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
            20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
            40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
            _ => (b ^ c ^ d, 0xca62_c1d6),
        };
        let temp = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(*wt);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = temp;
    }
    for (x, v) in h.iter_mut().zip([a, b, c, d, e]) {
        *x = x.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::digest;

    fn hex(d: [u8; 20]) -> String {
        d.iter().map(|b| format!("{b:02X}")).collect()
    }

    /// The four test vectors of RFC 3174 §7.3.
    #[test]
    fn rfc3174_vectors() {
        assert_eq!(
            hex(digest(b"abc")),
            "A9993E364706816ABA3E25717850C26C9CD0D89D"
        );
        assert_eq!(
            hex(digest(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983E441C3BD26EBAAE4AA1F95129E5E54670F1"
        );
        assert_eq!(
            hex(digest(&vec![b'a'; 1_000_000])),
            "34AA973CD4C4DAA4F61EEB2BDBAD27316534016F"
        );
        let four = b"0123456701234567012345670123456701234567012345670123456701234567".repeat(10);
        assert_eq!(
            hex(digest(&four)),
            "DEA356A2CDDD90C7A7ECEDC5EBB563934F460452"
        );
    }

    #[test]
    fn empty_and_block_boundaries() {
        assert_eq!(hex(digest(b"")), "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709");
        // 55 and 56 bytes straddle the padding boundary.
        assert_eq!(
            hex(digest(&[b'a'; 55])),
            "C1C8BBDC22796E28C0E15163D20899B65621D65A"
        );
        assert_eq!(
            hex(digest(&[b'a'; 56])),
            "C2DB330F6083854C99D4B5BFB6E8F29F201BE699"
        );
    }
}
