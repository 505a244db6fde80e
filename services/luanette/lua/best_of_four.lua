-- Generate four Orpheus variations and keep the one the classifier rates most human.

function describe()
  return {
    name = "best of four",
    description = "Four Orpheus variations (optionally seeded); keeps the one rated most human",
    params = {
      type = "object",
      properties = {
        seed = {type = "string", description = "CAS hash of a MIDI file to seed the generation"},
        temperature = {type = "number", minimum = 0, maximum = 2},
      },
    },
  }
end

local function human_confidence(hash)
  for _, label in ipairs(orpheus.classify{midi = hash}) do
    if label.label == "human" then
      return label.confidence
    end
  end
  return 0
end

function main(params)
  local options = {variations = 4, temperature = params.temperature}
  local candidates
  if params.seed then
    options.seed = params.seed
    candidates = orpheus.generate_seeded(options)
  else
    candidates = orpheus.generate(options)
  end
  local best, best_score = nil, -1
  for i, hash in ipairs(candidates) do
    local score = human_confidence(hash)
    log.info(string.format("%s: human %.2f", hash, score))
    if score > best_score then
      best, best_score = hash, score
    end
    job.progress(i / #candidates, "rated " .. i .. " of " .. #candidates)
  end
  return {best = best, human = best_score, candidates = candidates}
end
