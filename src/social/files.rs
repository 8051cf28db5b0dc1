//! What Chat8 accepts as uploads, recognised by their bytes, never by their
//! name: avatars (PNG, JPEG, GIF or WebP, decoded whole within pixel
//! limits), and chat files (images, decoded the same way; audio, video,
//! PDF, ZIP; UTF-8 text; nothing executable).

use std::io::Cursor;

/// Largest picture side, and the decoder's memory bound.
pub const MAX_SIDE: u32 = 8192;
const MAX_DECODE_BYTES: u64 = 128 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    /// FILE_001
    #[error("{0}")]
    Type(String),
    /// FILE_002
    #[error("the file is larger than {0} bytes")]
    Size(usize),
}

/// An image's type, if its bytes are a whole PNG, JPEG, GIF or WebP within
/// the limits.
pub fn image(bytes: &[u8]) -> Result<&'static str, FileError> {
    use image::ImageFormat as F;
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| FileError::Type(format!("unreadable image: {e}")))?;
    let (format, mime) = match reader.format() {
        Some(F::Png) => (F::Png, "image/png"),
        Some(F::Jpeg) => (F::Jpeg, "image/jpeg"),
        Some(F::Gif) => (F::Gif, "image/gif"),
        Some(F::WebP) => (F::WebP, "image/webp"),
        _ => {
            return Err(FileError::Type(
                "an image must be PNG, JPEG, GIF or WebP".into(),
            ))
        }
    };
    let mut reader = reader;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.set_format(format);
    reader
        .decode()
        .map_err(|e| FileError::Type(format!("the image does not decode: {e}")))?;
    Ok(mime)
}

/// A chat file's type (allowed ones only).
pub fn chat_file(bytes: &[u8]) -> Result<String, FileError> {
    match infer::get(bytes) {
        Some(t) => {
            let mime = t.mime_type();
            if mime.starts_with("image/") {
                return image(bytes).map(str::to_owned);
            }
            let allowed = mime.starts_with("audio/")
                || mime.starts_with("video/")
                || matches!(mime, "application/pdf" | "application/zip");
            if allowed {
                Ok(mime.to_owned())
            } else {
                Err(FileError::Type(format!(
                    "files of type {mime} are not accepted"
                )))
            }
        }
        None if is_text(bytes) => Ok("text/plain; charset=utf-8".into()),
        None => Err(FileError::Type("unrecognised file type".into())),
    }
}

/// UTF-8 without control characters other than tab and line breaks (an
/// unrecognised binary is not text).
fn is_text(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && std::str::from_utf8(bytes).is_ok_and(|t| {
            !t.chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(side: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, side, side);
        enc.set_color(png::ColorType::Rgb);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&vec![7u8; (side * side * 3) as usize])
            .unwrap();
        w.finish().unwrap();
        out
    }

    #[test]
    fn images_are_known_by_their_bytes_and_must_decode() {
        let p = png(4);
        assert_eq!(image(&p).unwrap(), "image/png");
        assert!(image(&p[..p.len() - 20]).is_err(), "truncated");
        assert!(image(b"MZ\x90\x00\x03\x00\x00\x00 not an image").is_err());
        assert!(image(b"hello").is_err());
    }

    #[test]
    fn chat_files_refuse_executables_and_take_text() {
        assert_eq!(chat_file(&png(4)).unwrap(), "image/png");
        assert!(chat_file(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00").is_err());
        let mut exe = b"MZ".to_vec();
        exe.resize(512, 0);
        assert!(chat_file(&exe).is_err());
        assert_eq!(
            chat_file("你好".as_bytes()).unwrap(),
            "text/plain; charset=utf-8"
        );
        assert!(chat_file(b"%PDF-1.7\n").unwrap().contains("pdf"));
    }
}
