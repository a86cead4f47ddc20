//! How far the WAL in a segment reaches: the end of its last whole, valid record. A segment
//! `pg_receivewal` is still writing (`.partial`) is full size, zeros after what it
//! received; its last record may be torn. Walking the records as recovery does (page
//! headers, records that continue across pages, each record's CRC-32C and its link to the
//! one before) finds the position recovery will reach with it: what `pitr window` and
//! `status` report as the streamed end.

use super::Lsn;

/// `XLP_FIRST_IS_CONTRECORD`: the page starts with the rest of a record begun before.
const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// `XLP_LONG_HEADER`: the page is a segment's first.
const XLP_LONG_HEADER: u16 = 0x0002;
const SHORT_PAGE_HEADER: usize = 24;
const LONG_PAGE_HEADER: usize = 40;
/// `SizeOfXLogRecord`: total length, xid, previous record, info, resource manager, CRC.
const RECORD_HEADER: usize = 24;
/// Where `xl_crc` sits in a record header.
const RECORD_CRC_AT: usize = 20;
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// `MAXALIGN`: records start on 8-byte boundaries.
fn max_align(n: usize) -> usize {
    (n + 7) & !7
}

/// A segment's pages, as far as they are written and are this segment's.
struct Pages<'a> {
    content: &'a [u8],
    start: u64,
    page_size: usize,
    magic: u16,
}

/// One page header.
struct Page {
    info: u16,
    rem_len: u32,
    header: usize,
}

impl Pages<'_> {
    /// The header of page `n` if the page is written and belongs here (the magic of the
    /// segment's first page, its own address).
    fn page(&self, n: usize) -> Option<Page> {
        let at = n.checked_mul(self.page_size)?;
        let head = self.content.get(at..at + SHORT_PAGE_HEADER)?;
        let info = u16_at(head, 2);
        let header = if info & XLP_LONG_HEADER != 0 { LONG_PAGE_HEADER } else { SHORT_PAGE_HEADER };
        let valid = u16_at(head, 0) == self.magic && u64_at(head, 8) == self.start + at as u64;
        valid.then(|| Page { info, rem_len: u32_at(head, 16), header })
    }
}

/// The end of the last whole, valid record in `content`, the segment that starts at
/// `start` (a MAXALIGNed position: where the next record would begin, as the source's
/// `pg_current_wal_flush_lsn()` reports after a commit). `None` when no record starts and
/// ends in it: a blank page, another segment's content, a segment whose first record
/// continues beyond what was received.
pub fn reach(content: &[u8], start: Lsn) -> Option<Lsn> {
    let first = content.get(..LONG_PAGE_HEADER)?;
    let page_size = u32_at(first, 36) as usize;
    if u16_at(first, 2) & XLP_LONG_HEADER == 0 || !page_size.is_power_of_two() || !(1024..=65536).contains(&page_size) {
        return None;
    }
    let pages = Pages { content, start: start.0, page_size, magic: u16_at(first, 0) };
    // The first record that starts in this segment: after whatever continues from the
    // segment before (whole pages of it, then the rest of the page it ends on).
    let mut n = 0;
    let mut pos = loop {
        let page = pages.page(n)?;
        if page.info & XLP_FIRST_IS_CONTRECORD == 0 {
            break n * page_size + page.header;
        }
        let room = page_size - page.header;
        if (page.rem_len as usize) < room {
            break max_align(n * page_size + page.header + page.rem_len as usize);
        }
        n += 1;
    };
    let mut end = None;
    let mut previous: Option<u64> = None;
    let mut record = Vec::new();
    'records: loop {
        if pos >= content.len() {
            break;
        }
        if pos % page_size == 0 {
            let Some(page) = pages.page(pos / page_size) else { break };
            // A record that begins on a fresh page does not continue one.
            if page.info & XLP_FIRST_IS_CONTRECORD != 0 {
                break;
            }
            pos += page.header;
        }
        let Some(len) = content.get(pos..pos + 4).map(|b| u32_at(b, 0) as usize) else { break };
        if len < RECORD_HEADER {
            break;
        }
        // The record's bytes, across pages (each later page starts with a header that
        // says how much of the record is still to come).
        record.clear();
        let mut at = pos;
        while record.len() < len {
            if at % page_size == 0 {
                let Some(page) = pages.page(at / page_size) else { break 'records };
                if page.info & XLP_FIRST_IS_CONTRECORD == 0 || page.rem_len as usize != len - record.len() {
                    break 'records;
                }
                at += page.header;
            }
            let take = (len - record.len()).min(page_size - at % page_size);
            let Some(bytes) = content.get(at..at + take) else { break 'records };
            record.extend_from_slice(bytes);
            at += take;
        }
        let mut crc = CRC32C.digest();
        crc.update(&record[RECORD_HEADER..]);
        crc.update(&record[..RECORD_CRC_AT]);
        if crc.finalize() != u32_at(&record, RECORD_CRC_AT) {
            break;
        }
        let here = start.0 + pos as u64;
        if previous.is_some_and(|p| u64_at(&record, 8) != p) {
            break;
        }
        previous = Some(here);
        pos = max_align(at);
        end = Some(Lsn(start.0 + pos as u64));
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 8192;
    const START: u64 = 0x0300_0000;

    /// A segment written the way Postgres writes one: page headers, records (total
    /// length, previous record, CRC-32C) that run on across pages. Returns the content
    /// and where each record ends (MAXALIGNed).
    fn segment(record_sizes: &[usize], pages: usize) -> (Vec<u8>, Vec<u64>) {
        let mut content = vec![0u8; pages * PAGE];
        let page_header = |content: &mut Vec<u8>, n: usize, rem: usize| {
            let at = n * PAGE;
            let mut info = if n == 0 { XLP_LONG_HEADER } else { 0 };
            if rem > 0 {
                info |= XLP_FIRST_IS_CONTRECORD;
            }
            content[at..at + 2].copy_from_slice(&0xD110u16.to_le_bytes());
            content[at + 2..at + 4].copy_from_slice(&info.to_le_bytes());
            content[at + 4..at + 8].copy_from_slice(&1u32.to_le_bytes());
            content[at + 8..at + 16].copy_from_slice(&(START + at as u64).to_le_bytes());
            content[at + 16..at + 20].copy_from_slice(&(rem as u32).to_le_bytes());
            if n == 0 {
                content[at + 32..at + 36].copy_from_slice(&(16u32 << 20).to_le_bytes());
                content[at + 36..at + 40].copy_from_slice(&(PAGE as u32).to_le_bytes());
            }
            if n == 0 { LONG_PAGE_HEADER } else { SHORT_PAGE_HEADER }
        };
        let mut pos = page_header(&mut content, 0, 0);
        let mut ends = Vec::new();
        let mut previous = 0u64;
        for (i, &size) in record_sizes.iter().enumerate() {
            let mut record = vec![0u8; size];
            record[..4].copy_from_slice(&(size as u32).to_le_bytes());
            record[8..16].copy_from_slice(&previous.to_le_bytes());
            for (j, b) in record[RECORD_HEADER..].iter_mut().enumerate() {
                *b = (i * 31 + j) as u8;
            }
            let mut crc = CRC32C.digest();
            crc.update(&record[RECORD_HEADER..]);
            crc.update(&record[..RECORD_CRC_AT]);
            let crc = crc.finalize();
            record[RECORD_CRC_AT..RECORD_HEADER].copy_from_slice(&crc.to_le_bytes());
            previous = START + pos as u64;
            let mut written = 0;
            while written < size {
                if pos % PAGE == 0 {
                    pos += page_header(&mut content, pos / PAGE, size - written);
                }
                let take = (size - written).min(PAGE - pos % PAGE);
                content[pos..pos + take].copy_from_slice(&record[written..written + take]);
                written += take;
                pos += take;
            }
            pos = max_align(pos);
            if pos % PAGE == 0 && pos < content.len() {
                pos += page_header(&mut content, pos / PAGE, 0);
                ends.push(START + (pos - SHORT_PAGE_HEADER) as u64);
            } else {
                ends.push(START + pos as u64);
            }
        }
        (content, ends)
    }

    #[test]
    fn the_reach_is_the_end_of_the_last_whole_record() {
        // Small records, one that spans three pages, and some after it.
        let sizes = [60, 100, 20_000, 33, 24, 77];
        let (content, ends) = segment(&sizes, 2048);
        assert_eq!(reach(&content, Lsn(START)), Some(Lsn(*ends.last().unwrap())));
        // Nothing received after the second record: the zeros end it there.
        let (mut cut, _) = segment(&sizes, 2048);
        let after_second = (ends[1] - START) as usize;
        cut[after_second..].fill(0);
        assert_eq!(reach(&cut, Lsn(START)), Some(Lsn(ends[1])));
    }

    #[test]
    fn a_torn_record_or_a_missing_page_is_not_counted() {
        let sizes = [60, 100, 20_000, 33];
        let (content, ends) = segment(&sizes, 2048);
        // The long record's last page never arrived: the reach stops before it.
        let mut torn = content.clone();
        let last_page = (ends[2] - START) as usize / PAGE;
        torn[last_page * PAGE..].fill(0);
        assert_eq!(reach(&torn, Lsn(START)), Some(Lsn(ends[1])));
        // One byte of its data is not what was written (its CRC fails).
        let mut flipped = content.clone();
        flipped[(ends[1] - START) as usize + 9000] ^= 1;
        assert_eq!(reach(&flipped, Lsn(START)), Some(Lsn(ends[1])));
        // The content of another segment, or nothing at all.
        assert_eq!(reach(&content, Lsn(START + (16 << 20))), None);
        assert_eq!(reach(&vec![0u8; 2048 * PAGE], Lsn(START)), None);
        assert_eq!(reach(&content[..10], Lsn(START)), None);
    }
}
