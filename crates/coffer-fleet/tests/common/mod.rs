//! A small deterministic state machine for the fleet tests: a map of
//! counters. Command = key bytes; applying it adds 1 and answers the new
//! value (8 bytes, big-endian).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use coffer_fleet::{InProcessFleet, ReplicationError, StateMachine};

#[derive(Default)]
pub struct Counters(pub BTreeMap<String, u64>);

impl StateMachine for Counters {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let k = String::from_utf8_lossy(command).into_owned();
        let v = self.0.entry(k).or_insert(0);
        *v += 1;
        v.to_be_bytes().to_vec()
    }
    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap()
    }
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), ReplicationError> {
        self.0 = serde_json::from_slice(snapshot)
            .map_err(|e| ReplicationError::Corrupt(e.to_string()))?;
        Ok(())
    }
}

pub fn counters() -> Box<dyn StateMachine> {
    Box::new(Counters::default())
}

pub fn decode(snapshot: &[u8]) -> BTreeMap<String, u64> {
    serde_json::from_slice(snapshot).unwrap()
}

pub fn value(resp: &[u8]) -> u64 {
    u64::from_be_bytes(resp.try_into().expect("8-byte answer"))
}

/// Waits until every running node has applied the same state; returns it.
pub async fn converged(fleet: &InProcessFleet, timeout: Duration) -> BTreeMap<String, u64> {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        let live = fleet.live_nodes();
        let snaps: Vec<Vec<u8>> = live.iter().map(|n| n.state_snapshot()).collect();
        let idx: Vec<u64> = live.iter().map(|n| n.applied_index()).collect();
        if snaps.windows(2).all(|w| w[0] == w[1]) && idx.windows(2).all(|w| w[0] == w[1]) {
            return decode(&snaps[0]);
        }
        if tokio::time::Instant::now() > end {
            panic!("nodes did not converge: applied indexes {idx:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A tiny deterministic PRNG (xorshift64*), so schedules are reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
