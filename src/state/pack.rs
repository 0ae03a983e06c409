//! Tables of unsigned integers packed into one byte buffer, each column as wide as its largest
//! value needs, in steps of 4 bits (0 to 64 bits): a user's counters are a few tables in one
//! allocation, where small ids, 12-bit counters and times close to the user's own time base
//! take a few nibbles instead of eight bytes. Rows have a fixed length (whole bytes, the last
//! nibble unused when the columns add up to an odd number), so a table is searched by halving
//! and changed in place; a value too wide for its column widens that column (the table is
//! rewritten, which is rare: widths only grow).
//!
//! A table in the buffer: its row count (seven bits per byte, the high bit set on every byte
//! but the last: one byte up to 127 rows), the columns' widths (4 bits each, two to a byte, the
//! first in the low nibble; 15 means 16 nibbles), then the rows. A table of exactly one row
//! ([`Table::parse_single`]; all widths 0, it is one byte per two columns) has no row count.
//!
//! The buffer itself is held behind one thin pointer ([`Packed`]), the length of its part
//! that does not describe itself written in front of it, and edited as [`Bytes`]: a map
//! slot holds 8 bytes for a user's state instead of a 16-byte boxed slice. A kind of buffer
//! may keep a few bytes before that length for its holder ([`Head::LEAD`]: a user's last use,
//! the data it served and whether it changed), which are not part of the buffer: they are
//! read and written as atomics through a shared reference, and never compared or copied.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, Range};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU8;

/// Columns per table, at most.
pub(super) const MAX_COLS: usize = 6;
/// Rows per table, at most.
pub(super) const MAX_ROWS: usize = u16::MAX as usize;

/// Nibbles a value needs: 0 to 16, never 15 (a width code of 15 says 16).
pub(super) fn width_of(v: u64) -> u8 {
    let n = (64 - v.leading_zeros()).div_ceil(4) as u8;
    if n == 15 { 16 } else { n }
}

fn code_of(width: u8) -> u8 {
    if width == 16 { 15 } else { width }
}

/// Bytes the row count takes.
fn count_len(rows: usize) -> usize {
    match rows {
        0..128 => 1,
        128..16_384 => 2,
        _ => 3,
    }
}

/// Inserts `n` zero bytes at `at`, growing the buffer by exactly that much: a user's buffer
/// stays exactly sized (the allocator grows it in place while its block has room).
pub(super) fn open_gap(buf: &mut Bytes, at: usize, n: usize) {
    if n == 0 {
        return;
    }
    let len = buf.len();
    buf.reserve_exact(n);
    buf.resize(len + n, 0);
    buf.copy_within(at..len, at + n);
    buf[at..at + n].fill(0);
}

fn mask(bits: u32) -> u64 {
    u64::MAX.checked_shr(64 - bits).unwrap_or(0)
}

/// Where a value lies: its first byte, and how far into that byte it starts (0 or 4 bits).
#[derive(Clone, Copy)]
struct Place {
    byte: usize,
    shift: u32,
}

#[inline]
fn read(buf: &[u8], p: Place, width: u8) -> u64 {
    if width == 0 {
        return 0;
    }
    let bits = 4 * u32::from(width);
    let bytes = &buf[p.byte..];
    if p.shift + bits <= 64
        && let Some(word) = bytes.first_chunk::<8>()
    {
        // One unaligned load, shifted and masked: most values are read this way.
        return (u64::from_le_bytes(*word) >> p.shift) & mask(bits);
    }
    let n = (p.shift + bits).div_ceil(8) as usize;
    let mut b = [0u8; 16];
    b[..n].copy_from_slice(&bytes[..n]);
    ((u128::from_le_bytes(b) >> p.shift) as u64) & mask(bits)
}

#[inline]
fn write(buf: &mut [u8], p: Place, width: u8, v: u64) {
    if width == 0 {
        return;
    }
    let bits = 4 * u32::from(width);
    let bytes = &mut buf[p.byte..];
    if p.shift + bits <= 64
        && let Some(word) = bytes.first_chunk_mut::<8>()
    {
        let m = mask(bits) << p.shift;
        let old = u64::from_le_bytes(*word);
        *word = ((old & !m) | ((v << p.shift) & m)).to_le_bytes();
        return;
    }
    let n = (p.shift + bits).div_ceil(8) as usize;
    let mut b = [0u8; 16];
    b[..n].copy_from_slice(&bytes[..n]);
    let m = u128::from(mask(bits)) << p.shift;
    let w = (u128::from_le_bytes(b) & !m) | ((u128::from(v) << p.shift) & m);
    bytes[..n].copy_from_slice(&w.to_le_bytes()[..n]);
}

/// Reads a row count at `at`: the count and its length; `None` when it runs off the buffer
/// or says more than [`MAX_ROWS`].
#[inline]
fn read_count(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let first = *buf.get(at)?;
    if first < 0x80 {
        return Some((usize::from(first), 1));
    }
    let mut rows = 0usize;
    for n in 0..3 {
        let b = *buf.get(at + n)?;
        rows |= usize::from(b & 0x7f) << (7 * n);
        if b & 0x80 == 0 {
            return (rows <= MAX_ROWS).then_some((rows, n + 1));
        }
    }
    None
}

fn write_count(to: &mut [u8], mut rows: usize) {
    for b in to.iter_mut() {
        *b = (rows & 0x7f) as u8 | 0x80;
        rows >>= 7;
    }
    if let Some(last) = to.last_mut() {
        *last &= 0x7f;
    }
}

/// The widths two columns' codes in a header byte say, and their sum: looked up rather than
/// decoded, since every pass over a buffer's tables reads their headers.
const WIDTHS: [(u8, u8, u8); 256] = {
    let mut t = [(0u8, 0u8, 0u8); 256];
    let mut b = 0;
    while b < 256 {
        let lo = (b & 0xf) as u8;
        let hi = (b >> 4) as u8;
        let (lo, hi) = (
            if lo == 15 { 16 } else { lo },
            if hi == 15 { 16 } else { hi },
        );
        t[b] = (lo, hi, lo + hi);
        b += 1;
    }
    t
};

/// Nibbles of a row whose column widths are the header bytes `head` (a last odd column's
/// byte has 0 in its high half).
#[inline]
fn row_nibbles(head: &[u8]) -> usize {
    head.iter()
        .map(|b| usize::from(WIDTHS[usize::from(*b)].2))
        .sum()
}

/// Bytes the well-formed table at `at` of a buffer takes, read from its header alone (cheaper
/// than [`Table::parse`], for passing over it).
pub(super) fn table_len_in(buf: &[u8], at: usize, cols: usize, single: bool) -> usize {
    let (rows, count) = if single {
        (1, 0)
    } else {
        read_count(buf, at).expect("a well-formed table")
    };
    let widths = at + count;
    let nibbles = row_nibbles(&buf[widths..widths + cols.div_ceil(2)]);
    count + cols.div_ceil(2) + rows * nibbles.div_ceil(2)
}

/// Bytes the table at `p` takes, read from its header alone.
///
/// # Safety
/// `p` points at a whole, well-formed table of `cols` columns.
pub(super) unsafe fn table_len(p: *const u8, cols: usize, single: bool) -> usize {
    // SAFETY: the caller's word: the header and rows are there.
    let b = |at: usize| unsafe { *p.add(at) };
    let (rows, mut head) = if single {
        (1, 0)
    } else if b(0) < 0x80 {
        (usize::from(b(0)), 1)
    } else {
        let (mut rows, mut n) = (0usize, 0usize);
        loop {
            let x = b(n);
            rows |= usize::from(x & 0x7f) << (7 * n);
            n += 1;
            if x & 0x80 == 0 {
                break;
            }
        }
        (rows, n)
    };
    let nibbles: usize = (0..cols.div_ceil(2))
        .map(|i| usize::from(WIDTHS[usize::from(b(head + i))].2))
        .sum();
    head += cols.div_ceil(2);
    head + rows * nibbles.div_ceil(2)
}

/// Where a table lies in its buffer, and its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Table {
    /// Offset of the table's header in the buffer.
    pub start: usize,
    pub rows: usize,
    cols: u8,
    /// Exactly one row, and no row count in the header.
    single: bool,
    /// In nibbles.
    widths: [u8; MAX_COLS],
    /// Offset of each column within a row, in nibbles.
    offsets: [u8; MAX_COLS],
    /// In bytes.
    row_len: u8,
    /// Offset of the first row in the buffer (kept, not worked out at every access).
    data: usize,
}

impl Table {
    fn header_len(&self) -> usize {
        let count = if self.single { 0 } else { count_len(self.rows) };
        count + self.cols().div_ceil(2)
    }

    /// Writes an empty table of `cols` columns at `at`.
    pub fn create(buf: &mut Bytes, at: usize, cols: usize) -> Table {
        open_gap(buf, at, 1 + cols.div_ceil(2));
        Self::parse(buf, at, cols).expect("just written")
    }

    /// The table at `at`; `None` when the buffer is too short for it.
    pub fn parse(buf: &[u8], at: usize, cols: usize) -> Option<Table> {
        let (rows, n) = read_count(buf, at)?;
        Self::parse_widths(buf, at, at + n, rows, cols, false)
    }

    /// The table of exactly one row at `at`, which has no row count.
    pub fn parse_single(buf: &[u8], at: usize, cols: usize) -> Option<Table> {
        Self::parse_widths(buf, at, at, 1, cols, true)
    }

    fn parse_widths(
        buf: &[u8],
        start: usize,
        widths_at: usize,
        rows: usize,
        cols: usize,
        single: bool,
    ) -> Option<Table> {
        let head = buf.get(widths_at..widths_at + cols.div_ceil(2))?;
        let mut t = Table {
            start,
            rows,
            cols: cols as u8,
            single,
            widths: [0; MAX_COLS],
            offsets: [0; MAX_COLS],
            row_len: 0,
            data: widths_at + cols.div_ceil(2),
        };
        // The high half of an odd last column's byte is unused, and 0.
        if cols % 2 == 1 && head[cols / 2] >> 4 != 0 {
            return None;
        }
        for (c, b) in head.iter().enumerate() {
            let (lo, hi, _) = WIDTHS[usize::from(*b)];
            t.widths[2 * c] = lo;
            if 2 * c + 1 < cols {
                t.widths[2 * c + 1] = hi;
            }
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
        self.row_len = off.div_ceil(2);
    }

    fn write_widths(&self, buf: &mut [u8]) {
        let at = self.data() - self.cols().div_ceil(2);
        for c in 0..self.cols() {
            let code = code_of(self.widths[c]);
            let b = &mut buf[at + c / 2];
            *b = if c % 2 == 0 {
                (*b & 0xf0) | code
            } else {
                (*b & 0x0f) | code << 4
            };
        }
    }

    fn cols(&self) -> usize {
        usize::from(self.cols)
    }

    fn row_len(&self) -> usize {
        usize::from(self.row_len)
    }

    fn data(&self) -> usize {
        self.data
    }

    /// The same table, `delta` bytes further on in its buffer: what a table before it grew
    /// or shrank by.
    pub fn moved(&mut self, delta: isize) {
        self.start = self.start.wrapping_add_signed(delta);
        self.data = self.data.wrapping_add_signed(delta);
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

    fn at(&self, row: usize, col: usize) -> Place {
        let nib = usize::from(self.offsets[col]);
        Place {
            byte: self.data() + row * self.row_len() + nib / 2,
            shift: 4 * (nib % 2) as u32,
        }
    }

    pub fn get(&self, buf: &[u8], row: usize, col: usize) -> u64 {
        debug_assert!(row < self.rows && col < self.cols());
        read(buf, self.at(row, col), self.widths[col])
    }

    /// Sets a value, widening its column when it does not fit.
    pub fn set(&mut self, buf: &mut Bytes, row: usize, col: usize, v: u64) {
        let need = width_of(v);
        if need > self.widths[col] {
            self.widen(buf, col, need);
        }
        write(buf, self.at(row, col), self.widths[col], v);
    }

    /// Rewrites the table with column `col` `width` nibbles wide.
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
        if self.rows == 0 {
            self.write_widths(buf);
            return;
        }
        let grow = self.rows * (self.row_len() - old.row_len());
        open_gap(buf, old.end(), grow);
        let (old_len, new_len) = (old.row_len(), self.row_len());
        if new_len <= 8 {
            // Rows that fit a word: each is read whole, its values are moved to their new
            // places in a register (the nibbles no column covers left 0), and it is written
            // whole. From the last row backwards, so that nothing unread is overwritten.
            for row in (0..self.rows).rev() {
                let from = old.data() + row * old_len;
                let mut b = [0u8; 8];
                b[..old_len].copy_from_slice(&buf[from..from + old_len]);
                let v = u64::from_le_bytes(b);
                let mut w = 0u64;
                for c in 0..self.cols() {
                    if old.widths[c] > 0 {
                        let x = (v >> (4 * old.offsets[c])) & mask(4 * u32::from(old.widths[c]));
                        w |= x << (4 * self.offsets[c]);
                    }
                }
                let to = self.data() + row * new_len;
                buf[to..to + new_len].copy_from_slice(&w.to_le_bytes()[..new_len]);
            }
            self.write_widths(buf);
            return;
        }
        // From the last row backwards, and in a row from its last column: every value moves
        // to where it was or later, so nothing unread is overwritten.
        let padded = self.widths[..self.cols()]
            .iter()
            .map(|w| usize::from(*w))
            .sum::<usize>()
            % 2
            == 1;
        for row in (0..self.rows).rev() {
            for c in (0..self.cols()).rev() {
                let v = read(buf, old.at(row, c), old.widths[c]);
                write(buf, self.at(row, c), self.widths[c], v);
            }
            if padded {
                // The unused nibble stays 0, so that equal states are equal bytes.
                buf[self.data() + (row + 1) * self.row_len() - 1] &= 0x0f;
            }
        }
        self.write_widths(buf);
    }

    /// Inserts a row of zeros at `row` (the values are then set one by one).
    pub fn insert(&mut self, buf: &mut Bytes, row: usize) {
        debug_assert!(!self.single);
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
        // One reallocation for the wider rows, the new one and a longer row count, if it
        // grows: no more, or closing the buffer would reallocate it again to give it back.
        let nibbles: usize = widths[..self.cols()].iter().map(|w| usize::from(*w)).sum();
        let new_len = nibbles.div_ceil(2);
        let count = count_len(self.rows + 1) - count_len(self.rows);
        buf.reserve_exact(self.rows * (new_len - self.row_len()) + new_len + count);
        if widths != self.widths {
            self.widen_to(buf, widths);
        }
        self.insert(buf, row);
        for (c, v) in values.iter().enumerate() {
            write(buf, self.at(row, c), self.widths[c], *v);
        }
    }

    pub fn remove(&mut self, buf: &mut Bytes, row: usize) {
        debug_assert!(!self.single);
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
        (0..self.rows)
            .map(|r| self.get(buf, r, col))
            .max()
            .unwrap_or(0)
    }

    /// In one pass, drops the rows whose column `col` `f` maps to `None` and sets it to what
    /// `f` says in the others, which must fit the column ([`Table::fit`]).
    pub fn retain_map(
        &mut self,
        buf: &mut Bytes,
        col: usize,
        mut f: impl FnMut(u64) -> Option<u64>,
    ) {
        let len = self.row_len();
        let mut kept = 0;
        for row in 0..self.rows {
            let Some(v) = f(self.get(buf, row, col)) else {
                continue;
            };
            debug_assert!(width_of(v) <= self.widths[col]);
            if kept != row {
                let from = self.data() + row * len;
                buf.copy_within(from..from + len, self.data() + kept * len);
            }
            write(buf, self.at(kept, col), self.widths[col], v);
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

    /// Writes the row count, which may take a byte more or less than before.
    fn set_rows(&mut self, buf: &mut Bytes, rows: usize) {
        assert!(rows <= MAX_ROWS, "at most 65,535 rows");
        let (old, new) = (count_len(self.rows), count_len(rows));
        if new > old {
            open_gap(buf, self.start, new - old);
        } else if new < old {
            buf.drain(self.start..self.start + (old - new));
        }
        self.rows = rows;
        self.data = self.start + self.header_len();
        write_count(&mut buf[self.start..self.start + new], rows);
    }

    /// Finds `key` in column 0, which is sorted.
    pub fn search(&self, buf: &[u8], key: u64) -> Result<usize, usize> {
        let (w, mut lo, mut hi) = (self.widths[0], 0, self.rows);
        if width_of(key) > w {
            return Err(self.rows);
        }
        while lo < hi {
            let mid = (lo + hi) / 2;
            let v = read(buf, self.at(mid, 0), w);
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
        while lo < hi {
            let mid = (lo + hi) / 2;
            if read(buf, self.at(mid, 0), w) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The row with the smallest value in column `col` (the first of equals); 0 when empty.
    pub fn min_row(&self, buf: &[u8], col: usize) -> usize {
        let (mut best, mut min) = (0, u64::MAX);
        for row in 0..self.rows {
            let v = self.get(buf, row, col);
            if v < min {
                (best, min) = (row, v);
            }
        }
        best
    }

    /// Adds `delta` to column `col` of every row from `first` on; the values must fit the
    /// column ([`Table::fit`]).
    pub fn add_from(&mut self, buf: &mut [u8], col: usize, first: usize, delta: u64) {
        let w = self.widths[col];
        for row in first..self.rows {
            let p = self.at(row, col);
            let v = read(buf, p, w) + delta;
            debug_assert!(width_of(v) <= w);
            write(buf, p, w, v);
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
        for row in 0..self.rows {
            let p = self.at(row, col);
            let v = read(buf, p, w);
            if v >= from {
                write(buf, p, w, v.wrapping_add_signed(delta));
            }
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
    /// Bytes kept in front of the length for the holder's own use ([`Packed::lead`]). A
    /// buffer with a lead keeps it when it is emptied ([`EMPTY_WITH_LEAD`]).
    const LEAD: usize = 0;

    /// # Safety
    /// `bytes` points at a whole, well-formed, non-empty buffer of this kind.
    unsafe fn head_len(bytes: *const u8) -> usize;
}

/// An exactly sized byte buffer behind one thin pointer (null when empty and without a
/// lead): the kind's lead ([`Head::LEAD`]), then the length of what follows its head
/// ([`Head`]) written in front of the bytes ([`prefix_len`]), so the pointer is all its owner
/// holds. Owned like a `Box<[u8]>` of the lead, the prefix and the bytes.
pub(super) struct Packed<H: Head> {
    ptr: Option<NonNull<u8>>,
    kind: PhantomData<H>,
}

// SAFETY: a `Packed` owns its allocation alone, as a `Box<[u8]>` does; shared references
// read the buffer, and touch the lead only through atomics ([`Packed::lead`]).
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

/// Bytes from the start of an allocation asked for at once when it is first read
/// ([`prefetch`]): a typical user's whole buffer, and some more.
const PREFETCH: usize = 512;
/// Bytes of a larger allocation asked for when it is opened for a change: the rest of a
/// heavy user's buffer.
const PREFETCH_MAX: usize = 4096;

/// Asks for the cache lines that hold bytes `from..=to` after `p`, without waiting for them.
/// Reading a buffer's length walks its table headers, each found from the one before, and a
/// search halves through a table: from memory, that is one miss after another, where these
/// requests overlap. Lines past the allocation are read, never used.
#[inline(always)]
fn prefetch(p: *const u8, from: usize, to: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let base = p as usize;
        let (first, last) = ((base + from) & !63, (base + to) & !63);
        for line in (first..=last).step_by(64) {
            // A prefetch is a hint: it reads nothing the program sees, and never faults.
            #[allow(unused_unsafe)]
            unsafe {
                use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line - base).cast::<i8>());
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, from, to);
}

/// What follows the lead of a buffer that was emptied: a length of 0 in two bytes, which
/// [`write_prefix`] never writes (it writes 0 in one).
const EMPTY_WITH_LEAD: [u8; 2] = [0x80, 0x00];

impl<H: Head> Packed<H> {
    /// The bytes' length, and where they start in the allocation (after the lead and the
    /// prefix).
    fn lengths(&self) -> (usize, usize) {
        let Some(ptr) = self.ptr else {
            return (0, 0);
        };
        prefetch(ptr.as_ptr(), 64, PREFETCH - 1);
        // SAFETY: the allocation starts with the lead, then a whole prefix (its last byte has
        // the high bit clear), then the bytes it describes (`finish`).
        let at = unsafe { ptr.as_ptr().add(H::LEAD) };
        let (mut tail, mut n) = (0usize, 0usize);
        loop {
            let b = unsafe { *at.add(n) };
            tail |= usize::from(b & 0x7f) << (7 * n);
            n += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        if n == EMPTY_WITH_LEAD.len() && tail == 0 {
            return (0, H::LEAD + n);
        }
        // SAFETY: the bytes after the prefix are a whole buffer of this kind (`finish`).
        let head = unsafe { H::head_len(at.add(n)) };
        (head + tail, H::LEAD + n)
    }

    /// Bytes the allocation takes, lead and prefix included (0 when there is none).
    pub fn allocation_len(&self) -> usize {
        let (len, off) = self.lengths();
        len + off
    }

    /// The allocation as the boxed slice it was made from.
    fn into_box(self) -> Option<Box<[u8]>> {
        let total = self.allocation_len();
        let ptr = std::mem::ManuallyDrop::new(self).ptr?;
        let slice = std::ptr::slice_from_raw_parts_mut(ptr.as_ptr(), total);
        // SAFETY: made by `Bytes::finish` from a boxed slice of exactly `total` bytes.
        Some(unsafe { Box::from_raw(slice) })
    }

    /// The buffer opened for changes (the lead kept in front).
    pub fn into_bytes(self) -> Bytes {
        let (len, off) = self.lengths();
        let Some(ptr) = std::mem::ManuallyDrop::new(self).ptr else {
            return Bytes::default();
        };
        if off + len > PREFETCH {
            prefetch(ptr.as_ptr(), PREFETCH, (off + len).min(PREFETCH_MAX) - 1);
        }
        let slice = std::ptr::slice_from_raw_parts_mut(ptr.as_ptr(), off + len);
        // SAFETY: made by `Bytes::finish` from a boxed slice of exactly `off + len` bytes.
        let b = unsafe { Box::from_raw(slice) };
        Bytes {
            v: b.into_vec(),
            off,
            lead: H::LEAD,
        }
    }

    /// The lead, as atomics: `None` while nothing is allocated ([`Packed::keep_lead`]).
    pub fn lead(&self) -> Option<&[AtomicU8]> {
        let ptr = self.ptr?;
        // SAFETY: the allocation starts with `H::LEAD` bytes that no other reference covers
        // (`Deref` starts after them, and changing the buffer takes it by value), and an
        // `AtomicU8` has the layout of a `u8`.
        Some(unsafe { std::slice::from_raw_parts(ptr.as_ptr().cast::<AtomicU8>(), H::LEAD) })
    }

    /// Makes sure there is an allocation to hold the lead, even for an empty buffer.
    pub fn keep_lead(&mut self) {
        if self.ptr.is_none() && H::LEAD > 0 {
            let mut v = vec![0; H::LEAD];
            v.extend_from_slice(&EMPTY_WITH_LEAD);
            let b = v.into_boxed_slice();
            self.ptr = NonNull::new(Box::into_raw(b).cast::<u8>());
        }
    }
}

impl<H: Head> Deref for Packed<H> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self.ptr {
            None => &[],
            Some(ptr) => {
                let (len, off) = self.lengths();
                // SAFETY: the allocation holds the lead and the prefix, then `len` bytes.
                unsafe { std::slice::from_raw_parts(ptr.as_ptr().add(off), len) }
            }
        }
    }
}

impl<H: Head> Packed<H> {
    /// A copy of `bytes`, which must be a whole, well-formed buffer of this kind (or empty):
    /// one allocation, a blank lead and the prefix written first.
    pub fn copy_of(bytes: &[u8]) -> Self {
        if bytes.is_empty() {
            return Packed::default();
        }
        // SAFETY: the caller's word: `bytes` is a whole buffer of this kind.
        let head = unsafe { H::head_len(bytes.as_ptr()) };
        debug_assert!(head <= bytes.len());
        let tail = bytes.len() - head;
        let need = H::LEAD + prefix_len(tail);
        let mut v = Vec::with_capacity(need + bytes.len());
        v.resize(need, 0);
        v.extend_from_slice(bytes);
        Bytes {
            v,
            off: need,
            lead: H::LEAD,
        }
        .finish()
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

/// A [`Packed`] buffer being changed: a vector whose first `off` bytes are its lead (the
/// first `lead` of them: none for a buffer made here) and room for the length, and which
/// reads, indexes and grows as the bytes after them.
#[derive(Default)]
pub(super) struct Bytes {
    v: Vec<u8>,
    off: usize,
    lead: usize,
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes { v, off: 0, lead: 0 }
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

    /// Closes the buffer, which must be whole and well formed (or empty): the lead kept (or
    /// made blank), the length of what follows its head written in front, the allocation
    /// exactly sized (it is reallocated only when something was removed, or the prefix grew).
    /// An empty buffer that had a lead keeps an allocation for it; one that had none is null.
    pub fn finish<H: Head>(mut self) -> Packed<H> {
        debug_assert!(self.lead == 0 || self.lead == H::LEAD);
        let len = self.v.len() - self.off;
        let (tail, need) = if len > 0 {
            // SAFETY: the caller's word: the bytes are a whole buffer of this kind.
            let head = unsafe { H::head_len(self.v[self.off..].as_ptr()) };
            debug_assert!(head <= len);
            (len - head, prefix_len(len - head))
        } else if self.lead > 0 {
            (0, EMPTY_WITH_LEAD.len())
        } else {
            return Packed::default();
        };
        // What comes before the bytes: from [lead, room] to [lead, prefix].
        let want = H::LEAD + need;
        if want > self.off {
            let more = want - self.off;
            self.v.reserve_exact(more);
            self.v
                .splice(self.lead..self.lead, std::iter::repeat_n(0, more));
        } else if want < self.off {
            self.v.drain(self.lead..self.lead + (self.off - want));
        }
        if self.lead == 0 {
            self.v[..H::LEAD].fill(0);
        }
        if len > 0 {
            write_prefix(&mut self.v[H::LEAD..want], tail);
        } else {
            self.v[H::LEAD..want].copy_from_slice(&EMPTY_WITH_LEAD);
        }
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
        // A row count, and two columns' widths to a byte.
        assert_eq!(t.len(), 1 + 2);
        for k in [30u64, 10, 20] {
            let at = t.search(&buf, k).unwrap_err();
            t.insert_row(&mut buf, at, &[k, k * 2, 0]);
        }
        // 8 bits, 8 bits and none: two bytes a row.
        assert_eq!(t.len(), 3 + 3 * 2);
        t.set(&mut buf, 1, 2, 1 << 40);
        t.set(&mut buf, 0, 1, 70_000);
        // 2 + 5 + 11 nibbles: 9 bytes a row.
        assert_eq!(t.len(), 3 + 3 * 9);
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

    #[test]
    fn nibble_columns_hold_every_width_at_either_half_of_a_byte() {
        let values = [
            0u64,
            1,
            0xf,
            0x10,
            0xabc,
            1 << 59,
            (1 << 60) - 1,
            1 << 60,
            u64::MAX,
        ];
        for v in values {
            for lead in [0u64, 1, 0x1f, 0xfff] {
                let mut buf = Bytes::from(vec![9u8]);
                let mut t = Table::create(&mut buf, 1, 3);
                t.insert_row(&mut buf, 0, &[lead, v, lead]);
                t.insert_row(&mut buf, 1, &[v, lead, v]);
                let got = [0, 1].map(|r| [0, 1, 2].map(|c| t.get(&buf, r, c)));
                assert_eq!(
                    got,
                    [[lead, v, lead], [v, lead, v]],
                    "{v:#x} after {lead:#x}"
                );
                assert_eq!(Table::parse(&buf, 1, 3), Some(t));
                assert_eq!(buf[0], 9);
                // SAFETY: a whole table at 1.
                assert_eq!(unsafe { table_len(buf.as_ptr().add(1), 3, false) }, t.len());
            }
        }
        assert_eq!(width_of(1 << 56), 16, "no width code says 15 nibbles");
    }

    #[test]
    fn a_widened_table_has_the_bytes_of_one_written_at_its_new_widths() {
        let rows: Vec<[u64; 3]> = (0..40u64).map(|r| [r * 3, r % 5, r * 7 % 16]).collect();
        // Rows of up to 8 bytes after widening, and wider ones; odd and even nibble counts.
        for (col, v) in [
            (0, 0xfff),
            (1, 0x1_0000),
            (2, 0xf),
            (2, 1 << 40),
            (0, u64::MAX),
        ] {
            let (mut a, mut b) = (Bytes::from(vec![3u8]), Bytes::from(vec![3u8]));
            let mut ta = Table::create(&mut a, 1, 3);
            let mut tb = Table::create(&mut b, 1, 3);
            tb.fit(&mut b, col, v);
            for (r, row) in rows.iter().enumerate() {
                ta.insert_row(&mut a, r, row);
                tb.insert_row(&mut b, r, row);
            }
            ta.fit(&mut a, col, v);
            assert_eq!(
                (&a[..], ta),
                (&b[..], tb),
                "column {col} widened for {v:#x}"
            );
        }
    }

    #[test]
    fn the_row_count_takes_a_byte_more_past_127_and_less_again_below() {
        let mut buf = Bytes::from(vec![5u8, 5]);
        let mut t = Table::create(&mut buf, 1, 2);
        for r in 0..300u64 {
            t.insert_row(&mut buf, r as usize, &[r, r % 7]);
            assert_eq!(Table::parse(&buf, 1, 2), Some(t));
        }
        // 12 bits and 4 bits: two bytes a row.
        assert_eq!(t.len(), 2 + 1 + 300 * 2);
        t.retain(&mut buf, |b, t, r| t.get(b, r, 0) % 3 == 0);
        assert_eq!(t.rows, 100);
        assert_eq!(t.len(), 1 + 1 + 100 * 2);
        assert_eq!(Table::parse(&buf, 1, 2), Some(t));
        assert_eq!((t.get(&buf, 99, 0), t.get(&buf, 99, 1)), (297, 297 % 7));
        assert_eq!((buf[0], buf[buf.len() - 1]), (5, 5));
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

    /// [`FirstByte`] buffers with three bytes in front for their holder.
    struct Led;

    impl Head for Led {
        const LEAD: usize = 3;

        unsafe fn head_len(bytes: *const u8) -> usize {
            unsafe { FirstByte::head_len(bytes) }
        }
    }

    fn lead_of(p: &Packed<Led>) -> Vec<u8> {
        let lead = p.lead().expect("an allocation");
        lead.iter()
            .map(|b| b.load(std::sync::atomic::Ordering::Relaxed))
            .collect()
    }

    #[test]
    fn a_lead_is_kept_through_changes_and_emptying_but_never_copied_or_compared() {
        let bytes = [2u8, 7, 8, 9];
        let mut p: Packed<Led> = Packed::copy_of(&bytes);
        assert_eq!(lead_of(&p), [0, 0, 0], "a copy's lead is blank");
        assert_eq!(p.allocation_len(), 3 + 1 + 4);
        for (b, v) in p.lead().unwrap().iter().zip([1, 2, 3]) {
            b.store(v, std::sync::atomic::Ordering::Relaxed);
        }
        assert_eq!(&p[..], &bytes);
        // Grown past a prefix boundary and shrunk: the lead stays in front.
        let mut b = p.into_bytes();
        b.resize(300, 5);
        p = b.finish();
        assert_eq!(
            (lead_of(&p), p.len(), p[0], p[299]),
            (vec![1, 2, 3], 300, 2, 5)
        );
        let mut b = p.into_bytes();
        b.truncate(3);
        p = b.finish();
        assert_eq!((lead_of(&p), &p[..]), (vec![1, 2, 3], &bytes[..3]));
        // Clones and equality see the bytes only.
        let q = p.clone();
        assert_eq!(lead_of(&q), [0, 0, 0]);
        assert!(p == q);
        // Emptied, the buffer keeps an allocation for its lead, and reads as empty.
        let mut b = p.into_bytes();
        b.truncate(0);
        p = b.finish();
        assert_eq!((lead_of(&p), p.len()), (vec![1, 2, 3], 0));
        assert_eq!(p.allocation_len(), 3 + EMPTY_WITH_LEAD.len());
        assert!(p == Packed::default());
        let mut b = p.into_bytes();
        b.extend_from_slice(&[0, 4]);
        p = b.finish();
        assert_eq!((lead_of(&p), &p[..]), (vec![1, 2, 3], &[0u8, 4][..]));
        // A buffer that never had one is given a blank lead on demand.
        let mut e: Packed<Led> = Packed::default();
        assert!(e.lead().is_none());
        e.keep_lead();
        assert_eq!((lead_of(&e), e.len()), (vec![0, 0, 0], 0));
    }
}
