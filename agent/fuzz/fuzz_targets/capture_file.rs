//! Any bytes as a capture file: open, read every frame, decode, build flows.
#![no_main]

use std::io::Write;

use gatewatch_agent::capture::{CaptureFile, Decoder};
use gatewatch_agent::flow::{FlowConfig, FlowTable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut tmp) = tempfile_in_shm() else { return };
    if tmp.1.write_all(data).is_err() {
        return;
    }
    if let Ok(mut file) = CaptureFile::open(&tmp.0) {
        let mut decoder = Decoder::new();
        let mut table = FlowTable::new(FlowConfig::default());
        let _ = file.for_each(|f| {
            if let Ok(pkt) = decoder.decode(f) {
                table.process(&pkt, &mut |_| {});
            }
            true
        });
        table.flush(&mut |_| {});
    }
    let _ = std::fs::remove_file(&tmp.0);
});

fn tempfile_in_shm() -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let path = std::env::temp_dir().join(format!("gw-fuzz-{}.pcap", std::process::id()));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}
