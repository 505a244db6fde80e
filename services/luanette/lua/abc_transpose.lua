-- ABC → MIDI → transpose → store: read a tune in ABC notation, move it to another key,
-- store both the MIDI and the transposed ABC in the CAS, and return their hashes.

function describe()
  return {
    name = "abc transpose",
    description = "Transposes an ABC tune and stores it as MIDI and as ABC",
    params = {
      type = "object",
      required = {"tune"},
      properties = {
        tune = {type = "string", description = "The tune in ABC notation"},
        semitones = {type = "integer", minimum = -24, maximum = 24, description = "How far to move it (default 0)"},
      },
    },
  }
end

function main(params)
  local ok, why = abc.validate(params.tune)
  if not ok then
    error("this tune cannot be played: " .. why)
  end
  local text = abc.transpose(params.tune, params.semitones or 0)
  local song = abc.to_midi(text)
  local stats = midi.stats(song)
  log.info(string.format("%d notes, %.1f s, range %d-%d", stats.notes, stats.seconds, stats.lowest, stats.highest))
  return {
    midi = midi.save(song),
    abc = cas.store(text, "text/vnd.abc"),
    notes = stats.notes,
    seconds = stats.seconds,
  }
end
