//! Attack windows made on the gateway for a round: the packet simulator attacks one of this
//! gateway's own device addresses (in this process only, nothing goes on the network), the
//! flow table turns the packets into flows, and their rows are interleaved with rows of the
//! device's real benign windows, so the windows look like this network under attack. Short
//! attacks come as partial windows too (padding, then the first attack flows).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use gatewatch_models::{Family, Window, FEATURE_COUNT, WINDOW};
use rand::seq::SliceRandom;
use rand::Rng;

use super::train::Labelled;
use crate::capture::sim::{self, AttackType, FloodVariant};
use crate::flow::FlowConfig;
use crate::pipeline::Extractor;

/// Simulated time per attack scenario and round: floods and exfiltration are short (their
/// frames and flows are all in memory at once: 20 s of flood took an agent past 400 MB), a
/// beacon long enough to call home a few times.
fn simulated(attack: AttackType) -> Duration {
    match attack {
        // Every flood packet may be a flow of its own, held in the flow table until the end.
        AttackType::DdosFlood(_) => Duration::from_secs(2),
        AttackType::DataExfiltration => Duration::from_secs(6),
        AttackType::BotnetBeacon => Duration::from_secs(120),
        _ => Duration::from_secs(30),
    }
}
/// Attack flows kept per scenario and round.
const MAX_ROWS: usize = 4096;

/// The simulator scenarios of each family it can make (none for IoT floods).
pub fn scenarios(family: Family) -> &'static [AttackType] {
    match family {
        Family::Scan => &[AttackType::PortScan],
        Family::DosDdos => &[
            AttackType::DdosFlood(FloodVariant::Syn),
            AttackType::DdosFlood(FloodVariant::Udp),
            AttackType::DdosFlood(FloodVariant::Http),
        ],
        Family::BruteForce => &[AttackType::BruteForceSsh, AttackType::BruteForceFtp],
        Family::SlowRate => &[AttackType::SlowRate],
        Family::BotnetC2 => &[AttackType::BotnetBeacon],
        Family::Exfiltration => &[AttackType::DataExfiltration],
        Family::WebAttack => &[AttackType::WebXss, AttackType::WebSqli],
        Family::Benign | Family::IotFlood => &[],
    }
}

/// Families the simulator can make.
pub fn families() -> Vec<Family> {
    gatewatch_models::FAMILIES
        .iter()
        .copied()
        .filter(|f| !scenarios(*f).is_empty())
        .collect()
}

/// The raw feature rows of the flows of `attack` against `device`, in completion order.
pub fn attack_rows(
    device: Ipv4Addr,
    attack: AttackType,
    seed: u64,
    flow_config: FlowConfig,
) -> Result<Vec<[f32; FEATURE_COUNT]>, String> {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
    // Short and mild: a flood's frames are all in memory at once (at full intensity, 20 s of
    // SYN flood took the agent past 400 MB), and a few thousand flows are all a round uses.
    let intensity = match attack {
        AttackType::DdosFlood(_) => rng.gen_range(0.05..0.25),
        _ => rng.gen_range(0.05..0.5),
    };
    let cfg = crate::attack::sim_config(
        device,
        attack,
        intensity,
        simulated(attack),
        seed,
        crate::pipeline::wall_clock_ns(),
    );
    let simulation = sim::simulate(&cfg).map_err(|e| e.to_string())?;
    let mut extractor = Extractor::new(flow_config);
    let mut rows = Vec::new();
    extractor.run_frames(&simulation.frames, &mut |rec| rows.push(rec.features_f32()));
    drop(simulation);
    extractor.flush(&mut |rec| rows.push(rec.features_f32()));
    rows.retain(|r| r.iter().all(|v| v.is_finite()));
    if rows.len() > MAX_ROWS {
        // Evenly spaced, in order.
        let step = rows.len() as f64 / MAX_ROWS as f64;
        rows = (0..MAX_ROWS).map(|i| rows[(i as f64 * step) as usize]).collect();
    }
    Ok(rows)
}

/// `count` windows of `family`: attack rows interleaved with the rows of real benign windows
/// (`benign`), or partial windows of attack rows only.
pub fn windows(
    family: Family,
    attack: &[[f32; FEATURE_COUNT]],
    benign: &[&Window],
    count: usize,
    rng: &mut impl Rng,
) -> Vec<Labelled> {
    if attack.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        // One in five: a short attack on a quiet device, as a partial window.
        let partial = benign.is_empty() || i % 5 == 4;
        let k = if partial {
            rng.gen_range(1..WINDOW)
        } else {
            rng.gen_range(2..=WINDOW)
        };
        let start = rng.gen_range(0..attack.len().saturating_sub(k).max(1));
        let run: Vec<[f32; FEATURE_COUNT]> = attack.iter().cycle().skip(start).take(k).copied().collect();
        let mut window = Box::new([[0f32; FEATURE_COUNT]; WINDOW]);
        let padded = if partial {
            window[WINDOW - k..].copy_from_slice(&run);
            WINDOW - k
        } else {
            let host = benign[rng.gen_range(0..benign.len())];
            // Which rows carry the attack: k of the 10 positions, in order.
            let mut positions: Vec<usize> = (0..WINDOW).collect();
            positions.shuffle(rng);
            positions.truncate(k);
            positions.sort_unstable();
            let mut next_attack = run.iter();
            let mut next_benign = host.iter();
            for (row, slot) in window.iter_mut().enumerate() {
                let from = if positions.binary_search(&row).is_ok() {
                    next_attack.next()
                } else {
                    next_benign.next()
                };
                if let Some(r) = from {
                    *slot = *r;
                }
            }
            0
        };
        out.push(Labelled {
            window,
            padded: padded as u8,
            family,
        });
    }
    out
}

/// The address attacks are aimed at: the first IPv4 device of the local set, else a
/// documentation address.
pub fn target(devices: impl IntoIterator<Item = IpAddr>) -> Ipv4Addr {
    devices
        .into_iter()
        .find_map(|ip| match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .unwrap_or(Ipv4Addr::new(192, 0, 2, 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_the_simulator_makes_gives_flows_and_windows() {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
        let benign_window = [[1.0f32; FEATURE_COUNT]; WINDOW];
        for family in families() {
            let rows = attack_rows(
                Ipv4Addr::new(192, 168, 7, 20),
                scenarios(family)[0],
                7,
                FlowConfig::default(),
            )
            .expect("simulated");
            assert!(!rows.is_empty(), "{family:?} gave no flows");
            let made = windows(family, &rows, &[&benign_window], 10, &mut rng);
            assert_eq!(made.len(), 10);
            for w in &made {
                assert_eq!(w.family, family);
                let real_rows = WINDOW - w.padded as usize;
                let benign_rows = w.window[w.padded as usize..]
                    .iter()
                    .filter(|r| **r == [1.0f32; FEATURE_COUNT])
                    .count();
                assert!(benign_rows < real_rows, "every window holds attack rows");
            }
        }
    }
}
