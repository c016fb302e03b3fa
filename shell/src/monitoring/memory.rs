//! Process memory from `/proc/self/status`: resident size and its
//! high-water mark. Linux only; elsewhere both read as zero.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Resident set size and its high-water mark, bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryReading {
    /// `VmRSS`.
    pub rss_bytes: u64,
    /// `VmHWM`.
    pub hwm_bytes: u64,
}

thread_local! {
    // Kept open per thread: one `pread` per reading instead of open/read/close.
    static STATUS: RefCell<Option<File>> = const { RefCell::new(None) };
    static STATM: RefCell<Option<File>> = const { RefCell::new(None) };
}

/// Bytes per page, learned once by comparing `statm`'s resident pages with
/// `status`'s `VmRSS` (no libc call needed); 4096 if that fails.
fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        let pages = resident_pages();
        let rss = read().rss_bytes;
        if pages == 0 || rss == 0 {
            return 4096;
        }
        // Round to the nearest power of two: the two readings are taken a
        // moment apart.
        (rss / pages)
            .max(1)
            .next_power_of_two()
            .clamp(4096, 1 << 16)
    })
}

fn resident_pages() -> u64 {
    STATM.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = File::open("/proc/self/statm").ok();
        }
        let Some(file) = slot.as_ref() else { return 0 };
        let mut buf = [0u8; 128];
        let n = file.read_at(&mut buf, 0).unwrap_or(0);
        std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|t| t.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    })
}

/// The resident set size alone, from `/proc/self/statm`: about 20 times
/// cheaper than [`read`], for the per-request RSS change.
pub fn rss_fast() -> u64 {
    resident_pages() * page_size()
}

/// Reads the current RSS and high-water mark.
pub fn read() -> MemoryReading {
    STATUS.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = File::open("/proc/self/status").ok();
        }
        let Some(file) = slot.as_ref() else {
            return MemoryReading::default();
        };
        let mut buf = [0u8; 4096];
        let n = file.read_at(&mut buf, 0).unwrap_or(0);
        parse(&buf[..n])
    })
}

fn parse(status: &[u8]) -> MemoryReading {
    let text = String::from_utf8_lossy(status);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    MemoryReading {
        rss_bytes: field("VmRSS:"),
        hwm_bytes: field("VmHWM:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_reads_this_process() {
        let r = parse(b"Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n");
        assert_eq!(
            r,
            MemoryReading {
                rss_bytes: 1 << 20,
                hwm_bytes: 2 << 20
            }
        );
        let live = read();
        assert!(live.rss_bytes > 0 && live.hwm_bytes >= live.rss_bytes / 2);
        let fast = rss_fast();
        let slow = read().rss_bytes;
        // The two sources agree within a few MiB (readings a moment apart).
        assert!(fast.abs_diff(slow) < 8 << 20, "{fast} vs {slow}");
        assert_eq!(page_size().count_ones(), 1);
    }
}
