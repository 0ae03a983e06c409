//! Tables of unsigned integers packed into one byte buffer, each column as wide as its largest
//! value needs (0 to 8 bytes): a user's counters are a few tables in one allocation, where
//! small ids and times close to the user's own time base take one to three bytes instead of
//! eight. Rows have a fixed length, so a table is searched by halving and changed in place;
//! a value too wide for its column widens that column (the table is rewritten, which is rare:
//! widths only grow).
//!
//! A table in the buffer: its row count (u16), one width byte per column, then the rows.

/// Columns per table, at most.
pub(super) const MAX_COLS: usize = 6;

/// Bytes a value needs.
pub(super) fn width_of(v: u64) -> u8 {
    (64 - v.leading_zeros()).div_ceil(8) as u8
}

/// Inserts `n` zero bytes at `at`, growing the buffer by exactly that much: a user's buffer
/// stays exactly sized (the allocator grows it in place while its block has room).
pub(super) fn open_gap(buf: &mut Vec<u8>, at: usize, n: usize) {
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
    pub fn create(buf: &mut Vec<u8>, at: usize, cols: usize) -> Table {
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
    pub fn set(&mut self, buf: &mut Vec<u8>, row: usize, col: usize, v: u64) {
        let need = width_of(v);
        if need > self.widths[col] {
            self.widen(buf, col, need);
        }
        let at = self.at(row, col);
        write(&mut buf[at..], self.widths[col], v);
    }

    /// Rewrites the table with column `col` `width` bytes wide.
    fn widen(&mut self, buf: &mut Vec<u8>, col: usize, width: u8) {
        let mut widths = self.widths;
        widths[col] = width;
        self.widen_to(buf, widths);
    }

    /// Rewrites the table with these column widths (none narrower than now), in one pass.
    fn widen_to(&mut self, buf: &mut Vec<u8>, widths: [u8; MAX_COLS]) {
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
    pub fn insert(&mut self, buf: &mut Vec<u8>, row: usize) {
        let at = self.data() + row * self.row_len();
        open_gap(buf, at, self.row_len());
        self.set_rows(buf, self.rows + 1);
    }

    /// Inserts a row with these values at `row`.
    pub fn insert_row(&mut self, buf: &mut Vec<u8>, row: usize, values: &[u64]) {
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

    pub fn remove(&mut self, buf: &mut Vec<u8>, row: usize) {
        let at = self.data() + row * self.row_len();
        buf.drain(at..at + self.row_len());
        self.set_rows(buf, self.rows - 1);
    }

    /// Widens column `col` if `v` does not fit it.
    pub fn fit(&mut self, buf: &mut Vec<u8>, col: usize, v: u64) {
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
        buf: &mut Vec<u8>,
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
    pub fn retain(
        &mut self,
        buf: &mut Vec<u8>,
        mut keep: impl FnMut(&[u8], &Table, usize) -> bool,
    ) {
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
    pub fn shift(&mut self, buf: &mut Vec<u8>, col: usize, from: u64, delta: i64) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_widen_for_what_they_hold_and_rows_keep_their_values() {
        let mut buf = vec![7u8, 7];
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
}
