//! Musical time: a tempo map (tempo and meter changes at beat positions) and exact
//! conversions between beats, ticks, seconds and samples.
//!
//! Beats are quarter notes. Ticks are `PPQ` per beat. A position is exact in the integer
//! domains: `sample_at(beats_at_sample(s)) == s` for every sample `s`, and
//! `tick_at(beats_at_tick(t)) == t` for every tick `t` (property-tested); beats and
//! seconds are `f64` within rounding.

use hooteproto::v1 as pb;

/// Ticks per beat (quarter note), as in MIDI files.
pub const PPQ: u32 = 960;
/// Slowest and fastest tempo accepted.
pub const TEMPO_RANGE: (f64, f64) = (1.0, 1000.0);
/// The furthest beat anything may sit at (about 7 hours at 120 bpm).
pub const MAX_BEATS: f64 = 50_000.0;

/// A bad tempo map edit.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TimeError {
    /// A position outside 0..=MAX_BEATS or not finite.
    #[error("position {0} beats is outside 0..={MAX_BEATS}")]
    Position(f64),
    /// A tempo outside TEMPO_RANGE.
    #[error("tempo {0} bpm is outside {lo}..={hi} bpm", lo = TEMPO_RANGE.0, hi = TEMPO_RANGE.1)]
    Tempo(f64),
    /// A meter whose numerator is 0 or above 64, or whose denominator is not a power of two up to 64.
    #[error("time signature {0}/{1} is not valid (numerator 1-64, denominator 1, 2, 4, 8, 16, 32 or 64)")]
    Meter(u32, u32),
    /// The change at beat 0 is the map's origin.
    #[error("the tempo at beat 0 can be changed but not removed")]
    RemoveOrigin,
}

/// A musical meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meter {
    /// Beats per bar, in units of the denominator.
    pub numerator: u32,
    /// The note value of one meter beat (4 = quarter).
    pub denominator: u32,
}

impl Meter {
    /// Checks and builds a meter.
    pub fn new(numerator: u32, denominator: u32) -> Result<Self, TimeError> {
        if !(1..=64).contains(&numerator) || !denominator.is_power_of_two() || denominator > 64 {
            return Err(TimeError::Meter(numerator, denominator));
        }
        Ok(Self { numerator, denominator })
    }

    /// One bar's length in quarter-note beats (6/8 is 3 beats).
    pub fn bar_beats(self) -> f64 {
        self.numerator as f64 * 4.0 / self.denominator as f64
    }

    /// The wire form.
    pub fn to_proto(self) -> pb::TimeSignature {
        pb::TimeSignature {
            numerator: self.numerator,
            denominator: self.denominator,
        }
    }
}

impl Default for Meter {
    fn default() -> Self {
        Self {
            numerator: 4,
            denominator: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Segment {
    beat: f64,
    bpm: f64,
    meter: Meter,
    /// Seconds from the timeline's start to `beat` (derived).
    seconds: f64,
    /// Beat at which the current meter's bar grid starts (the last meter change).
    bar_origin: f64,
}

/// Tempo and meter over the timeline. Always has a change at beat 0.
#[derive(Debug, Clone, PartialEq)]
pub struct TempoMap {
    segments: Vec<Segment>,
}

impl Default for TempoMap {
    fn default() -> Self {
        Self::new(120.0, Meter::default()).unwrap_or_else(|_| unreachable!("120 bpm is in range"))
    }
}

fn check_position(beats: f64) -> Result<(), TimeError> {
    if beats.is_finite() && (0.0..=MAX_BEATS).contains(&beats) {
        Ok(())
    } else {
        Err(TimeError::Position(beats))
    }
}

fn check_tempo(bpm: f64) -> Result<(), TimeError> {
    if bpm.is_finite() && (TEMPO_RANGE.0..=TEMPO_RANGE.1).contains(&bpm) {
        Ok(())
    } else {
        Err(TimeError::Tempo(bpm))
    }
}

impl TempoMap {
    /// A map with one tempo and meter from beat 0.
    pub fn new(bpm: f64, meter: Meter) -> Result<Self, TimeError> {
        check_tempo(bpm)?;
        Ok(Self {
            segments: vec![Segment {
                beat: 0.0,
                bpm,
                meter,
                seconds: 0.0,
                bar_origin: 0.0,
            }],
        })
    }

    /// Adds a change at `beat`, replacing one already there. `meter: None` keeps the meter
    /// in force at that point.
    pub fn set(&mut self, beat: f64, bpm: f64, meter: Option<Meter>) -> Result<(), TimeError> {
        check_position(beat)?;
        check_tempo(bpm)?;
        let index = self.segment_index_by_beat(beat);
        let meter = meter.unwrap_or(self.segments[index].meter);
        let segment = Segment {
            beat,
            bpm,
            meter,
            seconds: 0.0,
            bar_origin: 0.0,
        };
        if self.segments[index].beat == beat {
            self.segments[index] = segment;
        } else {
            self.segments.insert(index + 1, segment);
        }
        self.rederive();
        Ok(())
    }

    /// Removes the change at exactly `beat`; returns whether there was one.
    pub fn remove(&mut self, beat: f64) -> Result<bool, TimeError> {
        if beat == 0.0 {
            return Err(TimeError::RemoveOrigin);
        }
        let before = self.segments.len();
        self.segments.retain(|s| s.beat != beat);
        self.rederive();
        Ok(self.segments.len() != before)
    }

    fn rederive(&mut self) {
        let mut seconds = 0.0;
        let mut previous: Option<(f64, f64, Meter, f64)> = None;
        for segment in &mut self.segments {
            if let Some((beat, bpm, meter, origin)) = previous {
                seconds += (segment.beat - beat) * 60.0 / bpm;
                segment.bar_origin = if segment.meter == meter { origin } else { segment.beat };
            } else {
                segment.bar_origin = 0.0;
            }
            segment.seconds = seconds;
            previous = Some((segment.beat, segment.bpm, segment.meter, segment.bar_origin));
        }
    }

    fn segment_index_by_beat(&self, beats: f64) -> usize {
        self.segments.partition_point(|s| s.beat <= beats).saturating_sub(1)
    }

    fn segment_index_by_seconds(&self, seconds: f64) -> usize {
        self.segments
            .partition_point(|s| s.seconds <= seconds)
            .saturating_sub(1)
    }

    /// Seconds from the start to `beats` (negative beats extrapolate the first tempo).
    pub fn seconds_at(&self, beats: f64) -> f64 {
        let s = &self.segments[self.segment_index_by_beat(beats)];
        s.seconds + (beats - s.beat) * 60.0 / s.bpm
    }

    /// Beats at `seconds` from the start.
    pub fn beats_at(&self, seconds: f64) -> f64 {
        let s = &self.segments[self.segment_index_by_seconds(seconds)];
        s.beat + (seconds - s.seconds) * s.bpm / 60.0
    }

    /// The sample (frame) at which `beats` falls, rounded to the nearest.
    pub fn sample_at(&self, beats: f64, sample_rate: u32) -> u64 {
        (self.seconds_at(beats.max(0.0)) * sample_rate as f64).round() as u64
    }

    /// The beat position of a sample.
    pub fn beats_at_sample(&self, sample: u64, sample_rate: u32) -> f64 {
        self.beats_at(sample as f64 / sample_rate as f64)
    }

    /// The tick nearest to `beats`.
    pub fn tick_at(beats: f64) -> i64 {
        (beats * PPQ as f64).round() as i64
    }

    /// The beat position of a tick.
    pub fn beats_at_tick(tick: i64) -> f64 {
        tick as f64 / PPQ as f64
    }

    /// Tempo in force at `beats`.
    pub fn tempo_at(&self, beats: f64) -> f64 {
        self.segments[self.segment_index_by_beat(beats)].bpm
    }

    /// Meter in force at `beats`.
    pub fn meter_at(&self, beats: f64) -> Meter {
        self.segments[self.segment_index_by_beat(beats)].meter
    }

    /// The first bar line at or after `beats` (bars restart at every meter change).
    pub fn next_bar(&self, beats: f64) -> f64 {
        let index = self.segment_index_by_beat(beats);
        let s = &self.segments[index];
        let bar = s.meter.bar_beats();
        let bars = ((beats - s.bar_origin) / bar - 1e-9).ceil();
        let candidate = s.bar_origin + bars * bar;
        // A meter change before the candidate starts a new bar grid there.
        match self.segments.get(index + 1) {
            Some(next) if next.meter != s.meter && next.beat < candidate => next.beat,
            _ => candidate,
        }
    }

    /// The map in wire form.
    pub fn to_proto(&self) -> Vec<pb::TempoChange> {
        self.segments
            .iter()
            .map(|s| pb::TempoChange {
                position_beats: s.beat,
                tempo_bpm: s.bpm,
                time_signature: Some(s.meter.to_proto()),
            })
            .collect()
    }

    /// Rebuilds a map from its wire form (as persisted).
    pub fn from_proto(changes: &[pb::TempoChange]) -> Result<Self, TimeError> {
        let mut map = Self::default();
        for change in changes {
            let meter = match &change.time_signature {
                Some(ts) => Some(Meter::new(ts.numerator, ts.denominator)?),
                None => None,
            };
            map.set(change.position_beats, change.tempo_bpm, meter)?;
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map_strategy() -> impl Strategy<Value = TempoMap> {
        (
            20.0f64..400.0,
            proptest::collection::vec((0.01f64..2000.0, 20.0f64..400.0, 1u32..13), 0..8),
        )
            .prop_map(|(first, changes)| {
                let mut map = TempoMap::new(first, Meter::default()).expect("tempo in range");
                for (beat, bpm, numerator) in changes {
                    map.set(beat, bpm, Some(Meter::new(numerator, 8).expect("meter")))
                        .expect("change in range");
                }
                map
            })
    }

    proptest! {
        #[test]
        fn samples_round_trip_exactly(map in map_strategy(), sample in 0u64..(48_000u64 * 3600 * 4), rate in prop::sample::select(vec![22_050u32, 44_100, 48_000, 96_000])) {
            prop_assert_eq!(map.sample_at(map.beats_at_sample(sample, rate), rate), sample);
        }

        #[test]
        fn ticks_round_trip_exactly(tick in 0i64..(PPQ as i64 * 50_000)) {
            prop_assert_eq!(TempoMap::tick_at(TempoMap::beats_at_tick(tick)), tick);
        }

        #[test]
        fn beats_and_seconds_round_trip(map in map_strategy(), beats in 0.0f64..MAX_BEATS) {
            let back = map.beats_at(map.seconds_at(beats));
            prop_assert!((back - beats).abs() < 1e-9 * beats.max(1.0), "{beats} -> {back}");
        }

        #[test]
        fn time_only_moves_forward(map in map_strategy(), a in 0.0f64..5000.0, b in 0.0f64..5000.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(map.seconds_at(lo) <= map.seconds_at(hi));
        }

        #[test]
        fn a_beat_lasts_sixty_over_the_tempo(map in map_strategy(), beats in 0.0f64..3000.0) {
            // Within one segment, one beat takes 60/bpm seconds.
            let bpm = map.tempo_at(beats);
            let next_change = map.segments.iter().map(|s| s.beat).find(|&b| b > beats).unwrap_or(f64::INFINITY);
            let step = (next_change - beats).min(1.0) / 2.0;
            let dt = map.seconds_at(beats + step) - map.seconds_at(beats);
            prop_assert!((dt - step * 60.0 / bpm).abs() < 1e-9);
        }
    }

    #[test]
    fn a_tempo_change_only_moves_what_follows_it() {
        let mut map = TempoMap::default();
        assert_eq!(map.sample_at(8.0, 48_000), 192_000);
        map.set(4.0, 60.0, None).expect("set");
        // Beats 0-4 at 120 bpm = 2 s; beats 4-8 at 60 bpm = 4 s.
        assert_eq!(map.sample_at(4.0, 48_000), 96_000);
        assert_eq!(map.sample_at(8.0, 48_000), 288_000);
        assert_eq!(map.tempo_at(3.999), 120.0);
        assert_eq!(map.tempo_at(4.0), 60.0);
        assert!(map.remove(4.0).expect("remove"));
        assert_eq!(map.sample_at(8.0, 48_000), 192_000);
        assert_eq!(map.remove(0.0), Err(TimeError::RemoveOrigin));
    }

    #[test]
    fn bars_follow_the_meter() {
        let mut map = TempoMap::default();
        assert_eq!(map.next_bar(0.0), 0.0);
        assert_eq!(map.next_bar(0.5), 4.0);
        assert_eq!(map.next_bar(4.0), 4.0);
        map.set(6.0, 120.0, Some(Meter::new(3, 4).expect("3/4")))
            .expect("meter change");
        assert_eq!(map.next_bar(5.0), 6.0, "a meter change starts a bar");
        assert_eq!(map.next_bar(6.5), 9.0);
        map.set(12.0, 90.0, None).expect("tempo only");
        assert_eq!(map.next_bar(12.5), 15.0, "a tempo change keeps the bar grid");
    }

    #[test]
    fn bad_edits_say_what_is_wrong() {
        let mut map = TempoMap::default();
        assert_eq!(map.set(-1.0, 120.0, None), Err(TimeError::Position(-1.0)));
        assert!(matches!(map.set(1.0, f64::NAN, None), Err(TimeError::Tempo(_))));
        assert_eq!(map.set(1.0, 0.5, None), Err(TimeError::Tempo(0.5)));
        assert_eq!(Meter::new(4, 3), Err(TimeError::Meter(4, 3)));
        assert_eq!(Meter::new(0, 4), Err(TimeError::Meter(0, 4)));
    }
}
