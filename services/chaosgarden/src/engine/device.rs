//! Sound cards (cpal) and MIDI output ports (midir), behind the `devices` feature.
//!
//! cpal's `Stream` must stay on the thread that built it, so a dedicated thread opens the
//! stream, plays it, and parks until the engine stops. The callback renders the engine's
//! stereo block into whatever channel layout the card has, from a buffer allocated before
//! the stream starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use super::Output;
use super::clock::{self, Anchor};
use super::playhead::Playhead;
use super::scheduler::MidiSink;

/// Largest callback handled in one piece; larger ones are rendered in several.
const MAX_BLOCK: usize = 8192;

pub(super) struct Device {
    pub name: String,
    pub sample_rate: u32,
    device: cpal::Device,
    config: cpal::StreamConfig,
}

fn describe(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_string())
        .unwrap_or_else(|_| "unnamed device".into())
}

/// Finds the device to play on: `Ok(None)` means "fall back to the null backend" (only
/// for `Output::Auto`); a named device that is missing or cannot open is an error.
pub(super) fn open(output: &Output, sample_rate: u32) -> anyhow::Result<Option<Device>> {
    let host = cpal::default_host();
    let device = match output {
        Output::Null => return Ok(None),
        Output::Auto => match host.default_output_device() {
            Some(device) => device,
            None => {
                tracing::warn!("no default audio device; using the null backend");
                return Ok(None);
            }
        },
        Output::Device(wanted) => {
            let devices: Vec<cpal::Device> = host.output_devices().map(|d| d.collect()).unwrap_or_default();
            let names: Vec<String> = devices.iter().map(describe).collect();
            match devices.into_iter().find(|d| describe(d).contains(wanted.as_str())) {
                Some(device) => device,
                None => anyhow::bail!("no audio output device named like {wanted:?}; this host has {names:?}"),
            }
        }
    };
    let name = describe(&device);
    let default = match device.default_output_config() {
        Ok(config) => config,
        Err(e) if *output == Output::Auto => {
            tracing::warn!(device = %name, error = %e, "the default audio device cannot play; using the null backend");
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("audio device {name:?} has no output configuration")),
    };
    let mut config = default.config();
    // Ask for our rate; cards that refuse it fall back to their own below.
    config.sample_rate = sample_rate;
    Ok(Some(Device {
        name: format!("cpal:{name}"),
        sample_rate,
        device,
        config,
    }))
}

impl Device {
    pub(super) fn spawn(
        self,
        mut playhead: Playhead,
        stop: Arc<AtomicBool>,
        anchor: Arc<Anchor>,
    ) -> anyhow::Result<JoinHandle<()>> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name("chaosgarden-audio".into())
            .spawn(move || {
                let channels = self.config.channels.max(1) as usize;
                let mut stereo = vec![0.0f32; MAX_BLOCK * 2];
                let xruns = anchor.clone();
                let stream = self.device.build_output_stream::<f32, _, _>(
                    self.config,
                    move |data: &mut [f32], _info: &cpal::OutputCallbackInfo| {
                        let now = clock::nanos(Instant::now());
                        let frames = data.len() / channels;
                        let mut done = 0;
                        while done < frames {
                            let n = (frames - done).min(MAX_BLOCK);
                            let nanos = now + (done as u64 * 1_000_000_000 / playhead.sample_rate() as u64);
                            playhead.process(&mut stereo[..n * 2], nanos);
                            for i in 0..n {
                                let frame = &mut data[(done + i) * channels..(done + i + 1) * channels];
                                for (c, sample) in frame.iter_mut().enumerate() {
                                    *sample = if c < 2 { stereo[i * 2 + c] } else { 0.0 };
                                }
                                if channels == 1 {
                                    frame[0] = 0.5 * (stereo[i * 2] + stereo[i * 2 + 1]);
                                }
                            }
                            done += n;
                        }
                    },
                    move |error| {
                        xruns.xruns.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, "audio stream error");
                    },
                    None,
                );
                let stream = match stream.and_then(|s| s.play().map(|_| s)) {
                    Ok(stream) => {
                        let _ = ready_tx.send(Ok(()));
                        stream
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                // The engine unparks this thread at shutdown (and with every command).
                while !stop.load(Ordering::Relaxed) {
                    std::thread::park_timeout(Duration::from_millis(500));
                }
                drop(stream);
            })?;
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(thread),
            Ok(Err(e)) => anyhow::bail!("cannot start audio on {}: {e}", self_name(&thread)),
            Err(_) => anyhow::bail!("the audio device did not start within 5 s"),
        }
    }
}

fn self_name(thread: &JoinHandle<()>) -> String {
    thread.thread().name().unwrap_or("audio").to_string()
}

/// A midir output port.
pub struct MidiPort(midir::MidiOutputConnection);

impl MidiSink for MidiPort {
    fn send(&mut self, message: &[u8]) {
        if let Err(e) = self.0.send(message) {
            tracing::debug!(error = %e, "MIDI send failed");
        }
    }
}

/// Opens the first MIDI output port whose name contains `wanted`.
pub fn open_midi(wanted: &str) -> anyhow::Result<MidiPort> {
    let output =
        midir::MidiOutput::new("chaosgarden").map_err(|e| anyhow::anyhow!("MIDI output is unavailable: {e}"))?;
    let ports = output.ports();
    let names: Vec<String> = ports.iter().filter_map(|p| output.port_name(p).ok()).collect();
    let port = ports
        .iter()
        .find(|p| output.port_name(p).map(|n| n.contains(wanted)).unwrap_or(false))
        .ok_or_else(|| anyhow::anyhow!("no MIDI output port named like {wanted:?}; this host has {names:?}"))?
        .clone();
    let connection = output
        .connect(&port, "chaosgarden-out")
        .map_err(|e| anyhow::anyhow!("cannot open MIDI port {wanted:?}: {e}"))?;
    Ok(MidiPort(connection))
}
