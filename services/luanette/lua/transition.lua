-- The seed's transition: when the playhead nears the end of a section, ask Orpheus for a
-- bridge from this section into the next, fit it to the beats left, store it, return its hash.
-- Run it as a job (job_execute) or from a Chaosgarden marker (timeline_event).

function describe()
  return {
    name = "transition",
    description = "Bridge the current section into the next with Orpheus, fitted to the beats available",
    params = {
      type = "object",
      required = {"current_section", "next_section"},
      properties = {
        current_section = {type = "string", description = "CAS hash of the section playing now (MIDI)"},
        next_section = {type = "string", description = "CAS hash of the section that follows (MIDI)"},
        beats_available = {type = "number", minimum = 0.25, description = "How long the bridge may be (default 16)"},
        tempo = {type = "number", minimum = 20, maximum = 300, description = "Tempo of the bridge in bpm"},
      },
    },
  }
end

function main(params)
  local beats = params.beats_available or 16
  job.progress(0.1, "asking Orpheus for a bridge")
  local candidates = orpheus.bridge{a = params.current_section, b = params.next_section}
  job.progress(0.8, "fitting it to " .. beats .. " beats")
  local bridge = midi.slice(midi.load(candidates[1]), 0, beats)
  if params.tempo then
    bridge = midi.set_tempo(bridge, params.tempo)
  end
  local hash = midi.save(bridge)
  local length = midi.duration(bridge)
  log.info(string.format("bridge %s: %.1f beats, %d notes", hash, length.beats, #midi.notes(bridge)))
  return {bridge = hash, beats = length.beats}
end
