-- Route stable studies to the Med-CAM service (DicomModalities entry "medcam").
--
-- Every series of a stable study whose modality is listed in ROUTED_MODALITIES is sent once. Loop guard:
-- the SEG / SC / SR series the service sends back (Manufacturer "medcam-dicom", SeriesDescription "AI
-- Med-CAM evidence ...") are never routed; a source series is not routed again once it carries the user
-- metadata "MedcamRouted" (set after a successful C-STORE) or once one of our SRs lists it as evidence.
-- So the study becoming stable again when the results arrive does not start a second round, while
-- series added to the study later are routed.
--
-- A study that could not be sent (service down) gets the study metadata "MedcamRoutingFailed" and a log
-- line with the REST call that sends it again; Orthanc versions with Lua heart beats (LuaHeartBeatPeriod;
-- not Debian 12's 1.10.1) also retry it at every heart beat.

local MODALITY = 'medcam'
local OUTPUT_MANUFACTURER = 'medcam-dicom'
local OUTPUT_DESCRIPTION = '^AI Med%-CAM evidence'
local ROUTED_MODALITIES = { CT = true, MR = true, CR = true, DX = true, DR = true, US = true, MG = true,
                            XA = true, RF = true, NM = true, PT = true, XC = true, SM = true }
local pending = {}

local function IsOurOutput(tags)
  local description = tags['SeriesDescription'] or ''
  return tags['Manufacturer'] == OUTPUT_MANUFACTURER or string.find(description, OUTPUT_DESCRIPTION) ~= nil
end

local function Metadata(level, id)
  return ParseJson(RestApiGet('/' .. level .. '/' .. id .. '/metadata?expand'))
end

-- SeriesInstanceUIDs our SRs in this study list as evidence (the series already explained)
local function ExplainedSeries(allSeries)
  local explained = {}
  for _, series in ipairs(allSeries) do
    local tags = series['MainDicomTags']
    if IsOurOutput(tags) and tags['Modality'] == 'SR' then
      local sr = ParseJson(RestApiGet('/instances/' .. series['Instances'][1] .. '/tags?simplify'))
      for _, evidence in ipairs(sr['CurrentRequestedProcedureEvidenceSequence'] or {}) do
        for _, referenced in ipairs(evidence['ReferencedSeriesSequence'] or {}) do
          explained[referenced['SeriesInstanceUID']] = true
        end
      end
    end
  end
  return explained
end

local function Route(studyId)
  local study = ParseJson(RestApiGet('/studies/' .. studyId))
  local allSeries = {}
  for _, seriesId in ipairs(study['Series']) do
    table.insert(allSeries, ParseJson(RestApiGet('/series/' .. seriesId)))
  end
  local explained = ExplainedSeries(allSeries)
  local toSend = {}
  for _, series in ipairs(allSeries) do
    local tags = series['MainDicomTags']
    if IsOurOutput(tags) or explained[tags['SeriesInstanceUID']] then
      -- results of the service, or a series they already explain: never routed (loop guard)
    elseif not ROUTED_MODALITIES[tags['Modality'] or ''] then
      print('medcam: series ' .. series['ID'] .. ' not routed (modality ' .. (tags['Modality'] or '?') .. ')')
    elseif Metadata('series', series['ID'])['MedcamRouted'] == nil then
      table.insert(toSend, series['ID'])
    end
  end
  if #toSend == 0 then
    return true
  end
  local answer = RestApiPost('/modalities/' .. MODALITY .. '/store',
                             DumpJson({ Resources = toSend, Synchronous = true }, true))
  if answer == nil then
    RestApiPut('/studies/' .. studyId .. '/metadata/MedcamRoutingFailed', os.date('!%Y-%m-%dT%H:%M:%SZ'))
    print('medcam: sending study ' .. studyId .. ' to the service failed; to send it again: curl -X POST ' ..
          'http://localhost:8042/modalities/' .. MODALITY .. '/store -d \'{"Resources":["' .. studyId .. '"]}\'')
    return false
  end
  for _, seriesId in ipairs(toSend) do
    RestApiPut('/series/' .. seriesId .. '/metadata/MedcamRouted', 'yes')
  end
  if Metadata('studies', studyId)['MedcamRoutingFailed'] ~= nil then
    RestApiDelete('/studies/' .. studyId .. '/metadata/MedcamRoutingFailed')
  end
  print('medcam: routed ' .. #toSend .. ' series of study ' .. studyId)
  return true
end

function OnStableStudy(studyId, tags, metadata)
  if not Route(studyId) then
    pending[studyId] = true
  end
end

function OnHeartBeat()
  for studyId, _ in pairs(pending) do
    if Route(studyId) then
      pending[studyId] = nil
    end
  end
end
