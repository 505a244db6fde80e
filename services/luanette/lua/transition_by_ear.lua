-- A transition written by ear, with no model: store it under a name and point a
-- generate_transition marker at that name, e.g.
--
--   holler script store transition_by_ear.lua --name transition-by-ear
--   holler timeline marker generate_transition 4 --metadata '{"script":"transition-by-ear","boundary_beats":8}'
--
-- When the playhead crosses the marker, Chaosgarden runs it as a high-priority job. It reads
-- the timeline around the marker, listens to the section playing and the one after the
-- boundary, writes a walk from the last note of the one to the first note of the other in
-- ABC, renders it to MIDI, stores it, records an artifact whose parents are the regions it
-- listened to, and places it on the timeline itself, ending at the boundary. Storing a new
-- version under the same name changes what the next crossing runs.

VERSION = 1

function describe()
  return {
    name = "transition-by-ear",
    description = "Walk from the section playing into the next one, in ABC, placed before the boundary",
    params = {
      type = "object",
      properties = {
        position_beats = {type = "number", minimum = 0, description = "Where the marker is"},
        boundary_beats = {type = "number", minimum = 0, description = "Where the next section starts"},
        tempo = {type = "number", minimum = 20, maximum = 300, description = "Tempo at the marker, in bpm"},
      },
    },
  }
end

-- ABC for a MIDI pitch, with middle C (60) as "C": "c" an octave up, "C," an octave down.
-- Naturals are written out ("=G"): an accidental lasts to the bar line, so a G after a ^G
-- in the same bar would otherwise sound as G sharp.
local NAMES = {"=C", "^C", "=D", "^D", "=E", "=F", "^F", "=G", "^G", "=A", "^A", "=B"}
local function abc_pitch(pitch)
  local name = NAMES[pitch % 12 + 1]
  local octave = pitch // 12 - 5
  if octave >= 1 then
    name = name:lower() .. string.rep("'", octave - 1)
  elseif octave < 0 then
    name = name .. string.rep(",", -octave)
  end
  return name
end

-- The first or last note of a MIDI region, or nil for audio or an empty file.
local function edge_pitch(region, last)
  if region == nil or region.kind ~= "midi" then
    return nil
  end
  local notes = midi.notes(midi.load(region.cas_hash))
  local note = last and notes[#notes] or notes[1]
  return note and note.pitch
end

-- The artifact that names a region's object: the newest one, else a new one for it.
local function artifact_of(region)
  local named = hoot.list{hash = region.cas_hash, limit = 1}[1]
  if named then
    return named
  end
  return hoot.artifact{hash = region.cas_hash, name = "region " .. region.region_id, tags = {"region"}}
end

function main(params)
  local marker = params.position_beats or 0
  local boundary = params.boundary_beats or (marker + (params.beats_available or 8))
  local around = garden.timeline{from_beats = math.max(0, marker - 16), to_beats = boundary + 16}
  local before, after
  for _, region in ipairs(around.regions) do
    local ends = region.position_beats + region.duration_beats
    if region.position_beats <= marker and ends > marker then
      before = region
    end
    if region.position_beats >= boundary - 1e-6 and (after == nil or region.position_beats < after.position_beats) then
      after = region
    end
  end
  job.progress(0.2, "listening")
  local from_pitch = edge_pitch(before, true) or 60
  local to_pitch = edge_pitch(after, false) or 67

  -- Start on the next whole beat at least one beat ahead of the playhead; end at the boundary.
  local playhead = garden.status().position_beats
  local start = math.max(math.ceil(playhead + 1), math.ceil(marker))
  local beats = math.floor(boundary - start)
  if beats < 1 then
    start, beats = boundary, 1
  end

  -- One quarter note per beat, stepping evenly from one pitch to the other; bar lines every 4.
  local notes = {}
  for i = 0, beats - 1 do
    local pitch = beats == 1 and to_pitch or from_pitch + (to_pitch - from_pitch) * i // (beats - 1)
    notes[#notes + 1] = abc_pitch(pitch) .. ((i + 1) % 4 == 0 and " |" or "")
  end
  local tune = string.format(
    "X:1\nT:transition v%d\nM:4/4\nL:1/4\nQ:1/4=%d\nK:C\n%s|\n",
    VERSION, math.floor((params.tempo or 120) + 0.5), table.concat(notes, " "))
  job.progress(0.5, "rendering")
  local midi_hash = midi.save(abc.to_midi(tune))

  local parents = {}
  for _, region in ipairs({before, after}) do
    if region then
      parents[#parents + 1] = artifact_of(region).artifact_id
    end
  end
  local artifact = hoot.artifact{
    hash = midi_hash,
    name = string.format("transition into beat %g", boundary),
    tags = {"transition", "by-ear"},
    parents = parents,
    meta = {abc = tune, version = VERSION, start_beats = start, boundary_beats = boundary},
  }
  local region = garden.add_region{hash = midi_hash, at_beats = start}
  log.info(string.format("transition v%d: %d beats at %g, artifact %s", VERSION, beats, start, artifact.artifact_id))
  -- A region_id tells Chaosgarden the region is placed already.
  return {region_id = region.region_id, hash = midi_hash, artifact_id = artifact.artifact_id, version = VERSION}
end
