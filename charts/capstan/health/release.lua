-- Argo CD health check for capstan.dev/Release.
-- Healthy:     Ready=True and status.observedGeneration == metadata.generation.
-- Degraded:    Stalled=True (rolled back, failed first revision, invalid spec, conflict).
-- Suspended:   Reconciling=True with reason AwaitingPromotion (BlueGreen preview
--              waiting for capstan.dev/promote) or AnalysisInconclusive (phase Paused:
--              an analysis was inconclusive; promote or abort).
-- Progressing: Reconciling=True, observedGeneration behind, or no status yet.
local hs = {}

local function cond(obj, t)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == t then
        return c
      end
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local parts = {}
  if c.reason ~= nil and c.reason ~= "" then
    table.insert(parts, c.reason)
  end
  if c.message ~= nil and c.message ~= "" then
    table.insert(parts, c.message)
  end
  if #parts == 0 then
    return fallback
  end
  return table.concat(parts, ": ")
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Capstan to observe the Release"
  return hs
end

local generation = 0
if obj.metadata ~= nil and obj.metadata.generation ~= nil then
  generation = obj.metadata.generation
end
local observed = obj.status.observedGeneration or 0
if observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for Capstan to observe generation " .. tostring(generation) ..
    " (observed " .. tostring(observed) .. ")"
  return hs
end

local stalled = cond(obj, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

local reconciling = cond(obj, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" and
    (reconciling.reason == "AwaitingPromotion" or reconciling.reason == "AnalysisInconclusive") then
  hs.status = "Suspended"
  hs.message = describe(reconciling, "Waiting for promotion")
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling, "Rolling out")
  return hs
end

local ready = cond(obj, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the Release to become Ready")
return hs
