//! Tables of unsigned integers packed into one byte buffer, each column as wide as its largest
//! value needs (0 to 8 bytes): a user's counters are a few tables in one allocation, where
//! small ids and times close to the user's own time base take one to three bytes instead of
//! eight. Rows have a fixed length, so a table is searched by halving and changed in place;
//! a value too wide for its column widens that column (the table is rewritten, which is rare:
//! widths only grow).
//!
//! A table in the buffer: its row count (u16), one width byte per column, then the rows.
//!
//! The buffer itself is held behind one thin pointer ([`Packed`]), the length of its part
//! that does not describe itself written in front of it, and edited as [`Bytes`]: a map
//! slot holds 8 bytes for a user's state instead of a 16-byte boxed slice.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, Range};
use std::ptr::NonNull;

/// Columns per table, at most.
pub(super) const MAX_COLS: usize = 6;

/// Bytes a value needs.
pub(super) fn width_of(v: u64) -> u8 {
    (64 - v.leading_zeros()).div_ceil(8) as u8
}

/// Inserts `n` zero bytes at `at`, growing the buffer by exactly that much: a user's buffer
/// stays exactly sized (the allocator grows it in place while its block has room).
pub(super) fn open_gap(buf: &mut Bytes, at: usize, n: usize) {
    let len = buf.len();
    buf.reserve_exact(n);
    buf.resize(len + n, 0);
    buf.copy_within(at..len, at + n);
    buf[at..at + n].fill(0);
}

#[inline]
fn read(bytes: &[u8], width: u8) -> u64 {
    if let Some(word) = bytes.first_chunk::<8>() {
        // One unaligned load, masked: most values are read this way.
        let mask = u64::MAX.checked_shr(64 - 8 * u32::from(width)).unwrap_or(0);
        return u64::from_le_bytes(*word) & mask;
    }
    let mut b = [0u8; 8];
    b[..width as usize].copy_from_slice(&bytes[..width as usize]);
    u64::from_le_bytes(b)
}

#[inline]
fn write(bytes: &mut [u8], width: u8, v: u64) {
    if let Some(word) = bytes.first_chunk_mut::<8>() {
        let mask = u64::MAX.checked_shr(64 - 8 * u32::from(width)).unwrap_or(0);
        let old = u64::from_le_bytes(*word);
        *word = ((old & !mask) | (v & mask)).to_le_bytes();
        return;
    }
    bytes[..width as usize].copy_from_slice(&v.to_le_bytes()[..width as usize]);
}

/// Where a table lies in its buffer, and its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Table {
    /// Offset of the table's header in the buffer.
    pub start: usize,
    pub rows: usize,
    cols: u8,
    widths: [u8; MAX_COLS],
    /// Offset of each column within a row.
    offsets: [u8; MAX_COLS],
    row_len: u8,
}

impl Table {
    /// Bytes of an empty table's header.
    pub fn header_len(cols: usize) -> usize {
        2 + cols
    }

    /// Writes an empty table of `cols` columns at `at`.
    pub fn create(buf: &mut Bytes, at: usize, cols: usize) -> Table {
        open_gap(buf, at, Self::header_len(cols));
        Self::parse(buf, at, cols).expect("just written")
    }

    /// The table at `at`; `None` when the buffer is too short for it.
    pub fn parse(buf: &[u8], at: usize, cols: usize) -> Option<Table> {
        let head = buf.get(at..at + Self::header_len(cols))?;
        let rows = usize::from(u16::from_le_bytes([head[0], head[1]]));
        let mut t = Table {
            start: at,
            rows,
            cols: cols as u8,
            widths: [0; MAX_COLS],
            offsets: [0; MAX_COLS],
            row_len: 0,
        };
        for c in 0..cols {
            let w = head[2 + c];
            if w > 8 {
                return None;
            }
            t.widths[c] = w;
        }
        t.layout();
        (buf.len() >= t.end()).then_some(t)
    }

    fn layout(&mut self) {
        let mut off = 0;
        for c in 0..self.cols() {
            self.offsets[c] = off;
            off += self.widths[c];
        }
        self.row_len = off;
    }

    fn cols(&self) -> usize {
        usize::from(self.cols)
    }

    fn row_len(&self) -> usize {
        usize::from(self.row_len)
    }

    fn data(&self) -> usize {
        self.start + Self::header_len(self.cols())
    }

    /// Offset just past the table.
    pub fn end(&self) -> usize {
        self.data() + self.rows * self.row_len()
    }

    /// Bytes the table takes.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.end() - self.start
    }

    fn at(&self, row: usize, col: usize) -> usize {
        self.data() + row * self.row_len() + usize::from(self.offsets[col])
    }

    pub fn get(&self, buf: &[u8], row: usize, col: usize) -> u64 {
        debug_assert!(row < self.rows && col < self.cols());
        read(&buf[self.at(row, col)..], self.widths[col])
    }

    /// Sets a value, widening its column when it does not fit.
    pub fn set(&mut self, buf: &mut Bytes, row: usize, col: usize, v: u64) {
        let need = width_of(v);
        if need > self.widths[col] {
            self.widen(buf, col, need);
        }
        let at = self.at(row, col);
        write(&mut buf[at..], self.widths[col], v);
    }

    /// Rewrites the table with column `col` `width` bytes wide.
    fn widen(&mut self, buf: &mut Bytes, col: usize, width: u8) {
        let mut widths = self.widths;
        widths[col] = width;
        self.widen_to(buf, widths);
    }

    /// Rewrites the table with these column widths (none narrower than now), in one pass.
    fn widen_to(&mut self, buf: &mut Bytes, widths: [u8; MAX_COLS]) {
        let old = *self;
        self.widths = widths;
        self.layout();
        let grow = self.rows * (self.row_len() - old.row_len());
        let end = old.end();
        open_gap(buf, end, grow);
        // From the last row backwards: the new rows are longer, so nothing unread is
        // overwritten.
        for row in (0..self.rows).rev() {
            for c in (0..self.cols()).rev() {
                let v = read(&buf[old.at(row, c)..], old.widths[c]);
                let at = self.at(row, c);
                write(&mut buf[at..], self.widths[c], v);
            }
        }
        buf[self.start + 2..self.start + 2 + self.cols()].copy_from_slice(&widths[..self.cols()]);
    }

    /// Inserts a row of zeros at `row` (the values are then set one by one).
    pub fn insert(&mut self, buf: &mut Bytes, row: usize) {
        let at = self.data() + row * self.row_len();
        open_gap(buf, at, self.row_len());
        self.set_rows(buf, self.rows + 1);
    }

    /// Inserts a row with these values at `row`.
    pub fn insert_row(&mut self, buf: &mut Bytes, row: usize, values: &[u64]) {
        let mut widths = self.widths;
        for (w, v) in widths.iter_mut().zip(values) {
            *w = (*w).max(width_of(*v));
        }
        // One reallocation for the wider rows and the new one.
        let new_len: usize = widths[..self.cols()].iter().map(|w| usize::from(*w)).sum();
        buf.reserve_exact(self.rows * (new_len - self.row_len()) + new_len);
        if widths != self.widths {
            self.widen_to(buf, widths);
        }
        self.insert(buf, row);
        for (c, v) in values.iter().enumerate() {
            let at = self.at(row, c);
            write(&mut buf[at..], self.widths[c], *v);
        }
    }

    pub fn remove(&mut self, buf: &mut Bytes, row: usize) {
        let at = self.data() + row * self.row_len();
        buf.drain(at..at + self.row_len());
        self.set_rows(buf, self.rows - 1);
    }

    /// Widens column `col` if `v` does not fit it.
    pub fn fit(&mut self, buf: &mut Bytes, col: usize, v: u64) {
        let need = width_of(v);
        if need > self.widths[col] {
            self.widen(buf, col, need);
        }
    }

    /// The largest value of column `col` (0 when empty).
    pub fn max_value(&self, buf: &[u8], col: usize) -> u64 {
        let (w, mut at) = (self.widths[col], self.at(0, col));
        let mut max = 0;
        for _ in 0..self.rows {
            max = max.max(read(&buf[at..], w));
            at += self.row_len();
        }
        max
    }

    /// In one pass, drops the rows whose column `col` `f` maps to `None` and sets it to what
    /// `f` says in the others, which must fit the column ([`Table::fit`]).
    pub fn retain_map(
        &mut self,
        buf: &mut Bytes,
        col: usize,
        mut f: impl FnMut(u64) -> Option<u64>,
    ) {
        let (w, len) = (self.widths[col], self.row_len());
        let mut kept = 0;
        for row in 0..self.rows {
            let from = self.data() + row * len;
            let Some(v) = f(read(&buf[from + usize::from(self.offsets[col])..], w)) else {
                continue;
            };
            debug_assert!(width_of(v) <= w);
            let to = self.data() + kept * len;
            if kept != row {
                buf.copy_within(from..from + len, to);
            }
            write(&mut buf[to + usize::from(self.offsets[col])..], w, v);
            kept += 1;
        }
        if kept != self.rows {
            let from = self.data() + kept * len;
            buf.drain(from..self.end());
            self.set_rows(buf, kept);
        }
    }

    /// Keeps the rows `keep` says yes to, in order.
    pub fn retain(&mut self, buf: &mut Bytes, mut keep: impl FnMut(&[u8], &Table, usize) -> bool) {
        let mut kept = 0;
        for row in 0..self.rows {
            if keep(buf, self, row) {
                if kept != row {
                    let from = self.data() + row * self.row_len();
                    let to = self.data() + kept * self.row_len();
                    buf.copy_within(from..from + self.row_len(), to);
                }
                kept += 1;
            }
        }
        let from = self.data() + kept * self.row_len();
        buf.drain(from..self.end());
        self.set_rows(buf, kept);
    }

    fn set_rows(&mut self, buf: &mut [u8], rows: usize) {
        self.rows = rows;
        let n = u16::try_from(rows).expect("at most 65,535 rows");
        buf[self.start..self.start + 2].copy_from_slice(&n.to_le_bytes());
    }

    /// Finds `key` in column 0, which is sorted.
    pub fn search(&self, buf: &[u8], key: u64) -> Result<usize, usize> {
        let (w, mut lo, mut hi) = (self.widths[0], 0, self.rows);
        if width_of(key) > w {
            return Err(self.rows);
        }
        let base = self.data();
        while lo < hi {
            let mid = (lo + hi) / 2;
            let v = read(&buf[base + mid * self.row_len()..], w);
            match v.cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// The first row whose column 0 is at least `key` (column 0 sorted, repeats allowed).
    pub fn lower_bound(&self, buf: &[u8], key: u64) -> usize {
        let (w, mut lo, mut hi) = (self.widths[0], 0, self.rows);
        let base = self.data();
        while lo < hi {
            let mid = (lo + hi) / 2;
            if read(&buf[base + mid * self.row_len()..], w) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The row with the smallest value in column `col` (the first of equals); 0 when empty.
    pub fn min_row(&self, buf: &[u8], col: usize) -> usize {
        let (w, mut at) = (self.widths[col], self.at(0, col));
        let (mut best, mut min) = (0, u64::MAX);
        for row in 0..self.rows {
            let v = read(&buf[at..], w);
            if v < min {
                (best, min) = (row, v);
            }
            at += self.row_len();
        }
        best
    }

    /// Adds `delta` to column `col` of every row from `first` on; the values must fit the
    /// column ([`Table::fit`]).
    pub fn add_from(&mut self, buf: &mut [u8], col: usize, first: usize, delta: u64) {
        let (w, len) = (self.widths[col], self.row_len());
        let mut at = self.at(first, col);
        for _ in first..self.rows {
            let v = read(&buf[at..], w) + delta;
            debug_assert!(width_of(v) <= w);
            write(&mut buf[at..], w, v);
            at += len;
        }
    }

    /// Adds `delta` to every value of column `col` that is at least `from` (wrapping is the
    /// caller's to rule out).
    pub fn shift(&mut self, buf: &mut Bytes, col: usize, from: u64, delta: i64) {
        let widest = (0..self.rows)
            .map(|row| self.get(buf, row, col))
            .filter(|v| *v >= from)
            .map(|v| width_of(v.wrapping_add_signed(delta)))
            .max();
        match widest {
            None => return,
            Some(w) if w > self.widths[col] => self.widen(buf, col, w),
            Some(_) => {}
        }
        let w = self.widths[col];
        let mut at = self.at(0, col);
        for _ in 0..self.rows {
            let v = read(&buf[at..], w);
            if v >= from {
                write(&mut buf[at..], w, v.wrapping_add_signed(delta));
            }
            at += self.row_len();
        }
    }
}

/// Bytes a length takes written in front of a buffer: seven bits per byte, the low ones
/// first, the high bit set on every byte but the last (one byte up to 127, two up to 16,383).
fn prefix_len(len: usize) -> usize {
    let bits = (usize::BITS - len.leading_zeros()).max(1) as usize;
    bits.div_ceil(7)
}

fn write_prefix(to: &mut [u8], mut len: usize) {
    for b in to.iter_mut() {
        *b = (len & 0x7f) as u8 | 0x80;
        len >>= 7;
    }
    if let Some(last) = to.last_mut() {
        *last &= 0x7f;
    }
}

/// How a kind of buffer held as [`Packed`] says how long its head is (for a user: the fixed
/// fields and the tables, whose headers give their sizes); only the rest's length is
/// written in front of it, which for most users fits one byte.
pub(super) trait Head {
    /// # Safety
    /// `bytes` points at a whole, well-formed, non-empty buffer of this kind.
    unsafe fn head_len(bytes: *const u8) -> usize;
}

/// An exactly sized byte buffer behind one thin pointer (null when empty): the length of
/// what follows its head ([`Head`]) is written in front of the bytes ([`prefix_len`]), so
/// the pointer is all its owner holds. Owned like a `Box<[u8]>` of the prefix and the bytes.
pub(super) struct Packed<H: Head> {
    ptr: Option<NonNull<u8>>,
    kind: PhantomData<H>,
}

// SAFETY: a `Packed` owns its allocation alone, as a `Box<[u8]>` does; shared references
// only read it.
unsafe impl<H: Head> Send for Packed<H> {}
unsafe impl<H: Head> Sync for Packed<H> {}

impl<H: Head> Default for Packed<H> {
    fn default() -> Self {
        Packed {
            ptr: None,
            kind: PhantomData,
        }
    }
}

impl<H: Head> Packed<H> {
    /// The bytes' length and the prefix's.
    fn lengths(&self) -> (usize, usize) {
        let Some(ptr) = self.ptr else {
            return (0, 0);
        };
        let (mut tail, mut n) = (0usize, 0usize);
        loop {
            // SAFETY: the prefix is whole: its last byte has the high bit clear.
            let b = unsafe { *ptr.as_ptr().add(n) };
            tail |= usize::from(b & 0x7f) << (7 * n);
            n += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        // SAFETY: the bytes after the prefix are a whole buffer of this kind (`finish`).
        let head = unsafe { H::head_len(ptr.as_ptr().add(n)) };
        (head + tail, n)
    }

    /// Bytes the allocation takes, prefix included (0 when empty).
    pub fn allocation_len(&self) -> usize {
        let (len, prefix) = self.lengths();
        len + prefix
    }

    /// The allocation as the boxed slice it was made from.
    fn into_box(self) -> Option<Box<[u8]>> {
        let total = self.allocation_len();
        let ptr = std::mem::ManuallyDrop::new(self).ptr?;
        let slice = std::ptr::slice_from_raw_parts_mut(ptr.as_ptr(), total);
        // SAFETY: made by `Bytes::finish` from a boxed slice of exactly `total` bytes.
        Some(unsafe { Box::from_raw(slice) })
    }

    /// The buffer opened for changes.
    pub fn into_bytes(self) -> Bytes {
        let (len, prefix) = self.lengths();
        let Some(ptr) = std::mem::ManuallyDrop::new(self).ptr else {
            return Bytes::default();
        };
        let slice = std::ptr::slice_from_raw_parts_mut(ptr.as_ptr(), prefix + len);
        // SAFETY: made by `Bytes::finish` from a boxed slice of exactly `prefix + len` bytes.
        let b = unsafe { Box::from_raw(slice) };
        Bytes {
            v: b.into_vec(),
            off: prefix,
        }
    }
}

impl<H: Head> Deref for Packed<H> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self.ptr {
            None => &[],
            Some(ptr) => {
                let (len, prefix) = self.lengths();
                // SAFETY: the allocation holds the prefix and then `len` bytes.
                unsafe { std::slice::from_raw_parts(ptr.as_ptr().add(prefix), len) }
            }
        }
    }
}

impl<H: Head> Packed<H> {
    /// A copy of `bytes`, which must be a whole, well-formed buffer of this kind (or empty):
    /// one allocation, the prefix written first.
    pub fn copy_of(bytes: &[u8]) -> Self {
        if bytes.is_empty() {
            return Packed::default();
        }
        // SAFETY: the caller's word: `bytes` is a whole buffer of this kind.
        let head = unsafe { H::head_len(bytes.as_ptr()) };
        debug_assert!(head <= bytes.len());
        let tail = bytes.len() - head;
        let need = prefix_len(tail);
        let mut v = Vec::with_capacity(need + bytes.len());
        v.resize(need, 0);
        write_prefix(&mut v, tail);
        v.extend_from_slice(bytes);
        Bytes { v, off: need }.finish()
    }
}

impl<H: Head> Clone for Packed<H> {
    fn clone(&self) -> Self {
        Packed::copy_of(&self[..])
    }
}

impl<H: Head> PartialEq for Packed<H> {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl<H: Head> Drop for Packed<H> {
    fn drop(&mut self) {
        drop(std::mem::take(self).into_box());
    }
}

/// A [`Packed`] buffer being changed: a vector whose first `off` bytes are room for the
/// length, and which reads, indexes and grows as the bytes after them.
#[derive(Default)]
pub(super) struct Bytes {
    v: Vec<u8>,
    off: usize,
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes { v, off: 0 }
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.v[self.off..]
    }
}

impl DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.v[self.off..]
    }
}

impl Bytes {
    pub fn reserve_exact(&mut self, n: usize) {
        self.v.reserve_exact(n);
    }

    pub fn resize(&mut self, len: usize, value: u8) {
        self.v.resize(self.off + len, value);
    }

    pub fn truncate(&mut self, len: usize) {
        self.v.truncate(self.off + len);
    }

    pub fn drain(&mut self, range: Range<usize>) {
        self.v.drain(self.off + range.start..self.off + range.end);
    }

    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.v.extend_from_slice(bytes);
    }

    /// Closes the buffer, which must be whole and well formed: the length of what follows
    /// its head written in front, the allocation exactly sized (it is reallocated only when
    /// something was removed, or the prefix grew).
    pub fn finish<H: Head>(mut self) -> Packed<H> {
        let len = self.v.len() - self.off;
        if len == 0 {
            return Packed::default();
        }
        // SAFETY: the caller's word: the bytes are a whole buffer of this kind.
        let head = unsafe { H::head_len(self.v[self.off..].as_ptr()) };
        debug_assert!(head <= len);
        let tail = len - head;
        let need = prefix_len(tail);
        if need > self.off {
            let more = need - self.off;
            self.v.reserve_exact(more);
            self.v.splice(0..0, std::iter::repeat_n(0, more));
        } else if need < self.off {
            self.v.drain(..self.off - need);
        }
        write_prefix(&mut self.v[..need], tail);
        let b = self.v.into_boxed_slice();
        let ptr = NonNull::new(Box::into_raw(b).cast::<u8>());
        Packed {
            ptr,
            kind: PhantomData,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_widen_for_what_they_hold_and_rows_keep_their_values() {
        let mut buf = Bytes::from(vec![7u8, 7]);
        let mut t = Table::create(&mut buf, 1, 3);
        assert_eq!(t.len(), 5);
        for k in [30u64, 10, 20] {
            let at = t.search(&buf, k).unwrap_err();
            t.insert_row(&mut buf, at, &[k, k * 2, 0]);
        }
        assert_eq!(t.len(), 5 + 3 * 2);
        t.set(&mut buf, 1, 2, 1 << 40);
        t.set(&mut buf, 0, 1, 70_000);
        assert_eq!(t.len(), 5 + 3 * (1 + 3 + 6));
        let rows: Vec<[u64; 3]> = (0..3)
            .map(|r| [t.get(&buf, r, 0), t.get(&buf, r, 1), t.get(&buf, r, 2)])
            .collect();
        assert_eq!(rows, [[10, 70_000, 0], [20, 40, 1 << 40], [30, 60, 0]]);
        assert_eq!(t.search(&buf, 20), Ok(1));
        assert_eq!(t.search(&buf, 1 << 20), Err(3));
        assert_eq!(Table::parse(&buf, 1, 3), Some(t));
        assert_eq!((buf[0], buf[buf.len() - 1]), (7, 7), "neighbours untouched");
        t.retain(&mut buf, |b, t, r| t.get(b, r, 0) != 20);
        t.shift(&mut buf, 0, 15, 1);
        t.add_from(&mut buf, 1, 1, 5);
        assert_eq!(t.get(&buf, 1, 1), 65);
        t.remove(&mut buf, 0);
        assert_eq!((t.rows, t.get(&buf, 0, 0), t.get(&buf, 0, 1)), (1, 31, 65));
        assert_eq!(buf.len(), 1 + t.len() + 1);
    }

    /// Buffers whose head is their first byte's value (at most the whole buffer).
    struct FirstByte;

    impl Head for FirstByte {
        unsafe fn head_len(bytes: *const u8) -> usize {
            usize::from(unsafe { *bytes })
        }
    }

    #[test]
    fn packed_buffers_keep_their_bytes_across_prefix_lengths() {
        for (len, head) in [
            (0usize, 0u8),
            (1, 1),
            (127, 0),
            (200, 100),
            (16_384, 3),
            (70_000, 255),
        ] {
            let mut bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            if let Some(b) = bytes.first_mut() {
                *b = head;
            }
            let p: Packed<FirstByte> = Packed::copy_of(&bytes);
            assert_eq!(&p[..], &bytes[..]);
            let tail = len.saturating_sub(usize::from(head));
            let expected = if len == 0 { 0 } else { len + prefix_len(tail) };
            assert_eq!(p.allocation_len(), expected);
            let q = p.clone();
            assert!(p == q);
            // Grown and shrunk across a prefix boundary while open.
            let mut b = q.into_bytes();
            b.reserve_exact(200);
            b.resize(len + 200, 9);
            b.drain(len.min(1)..len.min(4));
            b[0] = head.min(5);
            let p: Packed<FirstByte> = b.finish();
            let cut = len.min(4) - len.min(1);
            assert_eq!(p.len(), len + 200 - cut);
            assert_eq!(p[p.len() - 1], 9);
            if len > 0 {
                assert_eq!(&p[1..len - cut], &bytes[len.min(4)..]);
            }
        }
    }
}
