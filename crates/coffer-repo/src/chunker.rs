//! Content-defined chunking of one open file (FastCDC 2020), holes
//! included.
//!
//! A sparse file is read without its holes: their places are found with
//! `SEEK_DATA`/`SEEK_HOLE` and handed to the chunker as zeros, so the chunks
//! (and their ids) are exactly those of the same bytes written densely. A
//! chunk that lies whole inside a hole is not even scanned: FastCDC looks at
//! no more than `CDC_MAX` bytes from a chunk's start, so any chunk starting
//! at least `CDC_MAX` bytes before the end of a hole is the same run of
//! zeros, [`zero_chunk`], whatever came before.

use crate::error::{RepoError, Result};
use fastcdc::v2020::{self, Normalization};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::OnceLock;

/// FastCDC parameters (bytes).
pub(crate) const CDC_MIN: usize = 64 * 1024;
pub(crate) const CDC_AVG: usize = 256 * 1024;
pub(crate) const CDC_MAX: usize = 1024 * 1024;
/// Files up to this size without holes are read whole; others are read
/// through a window of this size.
const WHOLE_READ_MAX: u64 = 8 * 1024 * 1024;
const WINDOW: usize = WHOLE_READ_MAX as usize;

static ZEROS: [u8; CDC_MAX] = [0; CDC_MAX];

/// FastCDC's cut, with the masks `FastCDC::new` would choose.
struct Cutter {
    mask_s: u64,
    mask_l: u64,
}

impl Cutter {
    fn new() -> Self {
        let (mask_s, mask_l) = v2020::select_masks(CDC_AVG, Normalization::Level1);
        Cutter { mask_s, mask_l }
    }

    /// The length of the chunk at the start of `src` (all of it when it is
    /// shorter than the minimum; it is never longer than `CDC_MAX`).
    fn cut(&self, src: &[u8]) -> usize {
        let (_, len) = v2020::cut(
            src,
            CDC_MIN,
            CDC_AVG,
            CDC_MAX,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        len
    }
}

/// The chunk cut from a run of zeros at least `CDC_MAX` long.
pub(crate) fn zero_chunk() -> &'static [u8] {
    static LEN: OnceLock<usize> = OnceLock::new();
    &ZEROS[..*LEN.get_or_init(|| Cutter::new().cut(&ZEROS))]
}

/// One chunk of a file.
pub(crate) struct Chunk<'a> {
    pub data: &'a [u8],
    /// The chunk lies whole inside a hole (so it is all zeros, and a caller
    /// may reuse the id it computed for the same zeros before).
    pub in_hole: bool,
}

/// What [`chunk_open_file`] read.
pub(crate) struct Chunked {
    /// Bytes chunked (the file's length as read).
    pub size: u64,
    /// Bytes read from the file system (holes are not read).
    pub bytes_read: u64,
    /// The file's holes as (offset, length), sorted, inside `size`.
    pub holes: Vec<(u64, u64)>,
}

/// The holes of `f` (of length `len`) from `SEEK_DATA`/`SEEK_HOLE`. A file
/// system that cannot tell reports none.
pub(crate) fn find_holes(f: &File, len: u64) -> Vec<(u64, u64)> {
    use rustix::fs::{seek, SeekFrom};
    let mut holes = Vec::new();
    let mut off = 0u64;
    while off < len {
        let data = match seek(f, SeekFrom::Data(off)) {
            Ok(d) => d.min(len),
            // No data from `off` on: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => len,
            Err(_) => return Vec::new(),
        };
        if data > off {
            holes.push((off, data - off));
        }
        if data >= len {
            break;
        }
        off = match seek(f, SeekFrom::Hole(data)) {
            Ok(h) => h,
            Err(_) => return Vec::new(),
        };
    }
    holes
}

/// The buffers a worker keeps from file to file: one for files read whole,
/// one for the window through which others are read.
#[derive(Default)]
pub(crate) struct Buffers {
    whole: Vec<u8>,
    window: Vec<u8>,
}

/// Reads an open file (`path` names it in errors) and calls `on_chunk` for
/// each content-defined chunk, in order.
pub(crate) fn chunk_open_file(
    mut f: File,
    path: &Path,
    bufs: &mut Buffers,
    mut on_chunk: impl FnMut(Chunk<'_>) -> Result<()>,
) -> Result<Chunked> {
    let io = |e| RepoError::io(path, e);
    let md = f.metadata().map_err(io)?;
    let len = md.len();
    // Fewer blocks than bytes: it may have holes (a dense file costs no
    // extra system call).
    let may_have_holes = md.blocks().saturating_mul(512) < len;
    let holes = if may_have_holes {
        find_holes(&f, len)
    } else {
        Vec::new()
    };
    if !may_have_holes && len <= WHOLE_READ_MAX {
        let cutter = Cutter::new();
        let buf = &mut bufs.whole;
        buf.clear();
        f.read_to_end(buf).map_err(io)?;
        let mut pos = 0;
        while pos < buf.len() {
            let n = cutter.cut(&buf[pos..]);
            on_chunk(Chunk {
                data: &buf[pos..pos + n],
                in_hole: false,
            })?;
            pos += n;
        }
        return Ok(Chunked {
            size: buf.len() as u64,
            bytes_read: buf.len() as u64,
            holes,
        });
    }
    // Read at offsets (`find_holes` moved the file's own).
    chunk_stream(Source::new(f, holes), path, &mut bufs.window, on_chunk)
}

/// A file read at given offsets, its holes given as zeros without reading.
struct Source {
    f: File,
    holes: Vec<(u64, u64)>,
    bytes_read: u64,
}

impl Source {
    fn new(f: File, holes: Vec<(u64, u64)>) -> Self {
        Source {
            f,
            holes,
            bytes_read: 0,
        }
    }

    /// The end of the hole holding `at`, if `at` is in one.
    fn hole_end(&self, at: u64) -> Option<u64> {
        let i = self.holes.partition_point(|&(o, l)| o + l <= at);
        self.holes
            .get(i)
            .filter(|&&(o, _)| o <= at)
            .map(|&(o, l)| o + l)
    }

    /// Fills the start of `dst` with the bytes at `at`; 0 at the end.
    fn fill(&mut self, dst: &mut [u8], at: u64) -> std::io::Result<usize> {
        let i = self.holes.partition_point(|&(o, l)| o + l <= at);
        let max = match self.holes.get(i) {
            Some(&(o, l)) if o <= at => {
                let n = dst.len().min((o + l - at) as usize);
                dst[..n].fill(0);
                return Ok(n);
            }
            Some(&(o, _)) => dst.len().min((o - at) as usize),
            None => dst.len(),
        };
        let n = loop {
            match self.f.read_at(&mut dst[..max], at) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            // The file ends here (it shrank since its holes were found).
            self.holes.truncate(i);
        }
        self.bytes_read += n as u64;
        Ok(n)
    }
}

/// Chunks a file through a window of `WINDOW` bytes (kept in `buf`),
/// skipping whole chunks inside holes.
fn chunk_stream(
    mut src: Source,
    path: &Path,
    buf: &mut Vec<u8>,
    mut on_chunk: impl FnMut(Chunk<'_>) -> Result<()>,
) -> Result<Chunked> {
    let cutter = Cutter::new();
    let zeros = zero_chunk();
    if buf.len() != WINDOW {
        buf.resize(WINDOW, 0);
    }
    // buf[..filled] holds the file's bytes from `win` on.
    let (mut win, mut filled, mut eof) = (0u64, 0usize, false);
    let mut pos = 0u64;
    loop {
        if let Some(end) = src.hole_end(pos) {
            if end - pos >= CDC_MAX as u64 {
                on_chunk(Chunk {
                    data: zeros,
                    in_hole: true,
                })?;
                pos += zeros.len() as u64;
                continue;
            }
        }
        if pos < win || pos > win + filled as u64 {
            // Skipped past the window: start a new one here.
            (win, filled, eof) = (pos, 0, false);
        }
        let mut off = (pos - win) as usize;
        if filled - off < CDC_MAX && !eof {
            buf.copy_within(off..filled, 0);
            filled -= off;
            win = pos;
            off = 0;
            while filled < WINDOW {
                let n = src
                    .fill(&mut buf[filled..], win + filled as u64)
                    .map_err(|e| RepoError::io(path, e))?;
                if n == 0 {
                    eof = true;
                    break;
                }
                filled += n;
            }
        }
        let avail = &buf[off..filled];
        if avail.is_empty() {
            break;
        }
        let n = cutter.cut(avail);
        let in_hole = src.hole_end(pos).is_some_and(|end| end >= pos + n as u64);
        on_chunk(Chunk {
            data: &avail[..n],
            in_hole,
        })?;
        pos += n as u64;
    }
    let mut holes = src.holes;
    // A file that shrank: no hole past its end.
    holes.retain(|&(o, _)| o < pos);
    if let Some(last) = holes.last_mut() {
        last.1 = last.1.min(pos - last.0);
    }
    Ok(Chunked {
        size: pos,
        bytes_read: src.bytes_read,
        holes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        blake3::Hasher::new_keyed(&key)
            .finalize_xof()
            .fill(&mut out);
        out
    }

    /// FastCDC's own iterator over the whole content: the reference.
    fn reference(data: &[u8]) -> Vec<usize> {
        v2020::FastCDC::new(data, CDC_MIN, CDC_AVG, CDC_MAX)
            .map(|c| c.length)
            .collect()
    }

    fn chunk_path(p: &Path) -> (Vec<Vec<u8>>, Vec<bool>, Chunked) {
        let (mut chunks, mut in_hole) = (Vec::new(), Vec::new());
        let f = File::open(p).unwrap();
        let done = chunk_open_file(f, p, &mut Buffers::default(), |c| {
            chunks.push(c.data.to_vec());
            in_hole.push(c.in_hole);
            Ok(())
        })
        .unwrap();
        (chunks, in_hole, done)
    }

    #[test]
    fn the_zero_chunk_is_what_fastcdc_cuts_from_zeros() {
        assert_eq!(zero_chunk().len(), reference(&vec![0u8; 3 * CDC_MAX])[0]);
        assert!(zero_chunk().iter().all(|&b| b == 0));
    }

    /// Files read through the window (larger than the whole-read limit)
    /// are cut exactly as FastCDC cuts the whole content.
    #[test]
    fn a_large_file_is_cut_as_fastcdc_cuts_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        let mut data = noise(1, 9 * CDC_MAX + 12_345);
        data.extend(vec![0u8; 3 * CDC_MAX + 7]); // zeros written, not a hole
        data.extend(noise(2, 5 * CDC_MAX));
        std::fs::write(&p, &data).unwrap();
        let (chunks, in_hole, done) = chunk_path(&p);
        assert_eq!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            reference(&data)
        );
        assert_eq!(chunks.concat(), data);
        assert!(in_hole.iter().all(|h| !h));
        assert_eq!(
            (done.size, done.bytes_read),
            (data.len() as u64, data.len() as u64)
        );
        assert!(done.holes.is_empty());
    }

    /// A file with holes is cut as its dense bytes are, the holes are not
    /// read, and they are reported.
    #[test]
    fn holes_are_zeros_to_the_chunker_and_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse");
        let len = 40 * CDC_MAX as u64 + 3;
        let parts = [
            (0u64, noise(3, 100_000)),
            (7 * CDC_MAX as u64 + 5, noise(4, 2 * CDC_MAX + 1)),
            (30 * CDC_MAX as u64, noise(5, 4096)),
        ];
        let f = File::create(&p).unwrap();
        f.set_len(len).unwrap();
        let mut dense = vec![0u8; len as usize];
        for (o, d) in &parts {
            f.write_all_at(d, *o).unwrap();
            dense[*o as usize..*o as usize + d.len()].copy_from_slice(d);
        }
        f.sync_all().unwrap();
        let holes = find_holes(&f, len);
        if holes.is_empty() {
            return; // a file system without holes: nothing to test
        }
        let (chunks, in_hole, done) = chunk_path(&p);
        assert_eq!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            reference(&dense)
        );
        assert_eq!(chunks.concat(), dense);
        assert_eq!(done.size, len);
        assert_eq!(done.holes, holes);
        let data: u64 = parts.iter().map(|(_, d)| d.len() as u64).sum();
        let allocated = std::fs::metadata(&p).unwrap().blocks() * 512;
        assert!(
            done.bytes_read >= data && done.bytes_read <= allocated,
            "read {} of {data} bytes of data",
            done.bytes_read
        );
        // Chunks reported inside a hole are zeros, and most of the file is.
        for (c, h) in chunks.iter().zip(&in_hole) {
            assert!(!h || c.iter().all(|&b| b == 0));
        }
        assert!(in_hole.iter().filter(|h| **h).count() > 20);
    }
}
