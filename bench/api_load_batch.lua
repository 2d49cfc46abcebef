-- Ingestion scenario of bench/api_load.py: POST /v1/batch (Segment's HTTP API), each batch of
-- BATCH events mixing identify, track and page calls of known customers (userId and e-mail from
-- a file, one "userId<TAB>email" per line) and of anonymous visitors. Every event has a unique
-- messageId, "RUN-THREAD-BATCH-N", so that the database can be checked event by event.
--
--   wrk -t 20 -c 20 -d 30s --timeout 60s -s bench/api_load_batch.lua URL -- IDS RUN BATCH
--
-- The write key comes from the environment (BENCH_WRITE_AUTH: "Basic base64(key:)").
-- One connection per thread: responses then come back in the order the batches were sent,
-- so batch k of a thread is acknowledged exactly when its k-th response is a 2xx (wrk builds
-- one request it never sends with the first thread's first request() call: its script check).
-- done() prints "BENCH {json}" with the latency percentiles and, per thread, the batches
-- built, the responses received and the failed ones ("n:status" pairs).

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

local identities = {}
local run = ""
local size = 100
built = 0
responses = 0
failed = ""

local tracks = {
  { "Product Viewed", 50 }, { "Product Added", 15 }, { "Products Searched", 15 },
  { "Checkout Started", 5 }, { "Order Completed", 5 }, { "Newsletter Subscribed", 10 },
}
local pages = { "Accueil", "Produit", "Catégorie", "Panier", "Mon compte", "Magasins" }
local paths = { "/", "/produits/", "/categories/", "/panier", "/compte", "/magasins" }

function init(args)
  for line in io.lines(args[1]) do
    local user, email = line:match("^([^\t]*)\t?(.*)$")
    if user and user ~= "" then
      identities[#identities + 1] = { user, email }
    end
  end
  assert(#identities > 0, "no identity in " .. args[1])
  run = args[2]
  size = tonumber(args[3]) or 100
  math.randomseed(id * 7919 + #identities)
  wrk.method = "POST"
  wrk.path = "/v1/batch"
  wrk.headers["Authorization"] = os.getenv("BENCH_WRITE_AUTH") or ""
  wrk.headers["Content-Type"] = "application/json"
end

local function track_name()
  local r = math.random(100)
  for _, entry in ipairs(tracks) do
    r = r - entry[2]
    if r <= 0 then
      return entry[1]
    end
  end
  return tracks[1][1]
end

local function event(number, when)
  local message = string.format('"messageId":"%s-%d-%d-%d","timestamp":"%s"', run, id, built,
    number, when)
  local who
  local known = math.random() < 0.6
  local person = identities[math.random(#identities)]
  if known then
    who = string.format('"userId":"%s"', person[1])
  else
    who = string.format('"anonymousId":"%s-anon-%d-%d"', run, id, math.random(50000))
  end
  local context = '"context":{"library":{"name":"analytics.js","version":"4.1.0"},' ..
    '"locale":"fr-FR","userAgent":"Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}'
  local r = math.random()
  if r < 0.1 then
    local traits = ""
    if known and person[2] ~= "" then
      traits = string.format(',"traits":{"email":"%s"}', person[2])
    end
    return string.format('{"type":"identify",%s,%s%s,%s}', message, who, traits, context)
  elseif r < 0.6 then
    local sku = math.random(20000)
    return string.format(
      '{"type":"track","event":"%s",%s,%s,"properties":{"sku":"SKU%05d","price":%d.%02d,' ..
      '"currency":"EUR"},%s}', track_name(), message, who, sku, math.random(5, 300),
      math.random(0, 99), context)
  end
  local p = math.random(#pages)
  return string.format(
    '{"type":"page","name":"%s",%s,%s,"properties":{"path":"%s%d","url":' ..
    '"https://boutique.soleil.example%s%d"},%s}', pages[p], message, who, paths[p],
    math.random(5000), paths[p], math.random(5000), context)
end

function request()
  built = built + 1
  local when = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local events = {}
  for n = 1, size do
    events[n] = event(n, when)
  end
  local body = '{"batch":[' .. table.concat(events, ",") .. '],"sentAt":"' .. when .. '"}'
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    failed = failed .. responses .. ":" .. status .. ","
  end
end

function done(summary, latency, requests)
  local parts = {}
  for _, thread in ipairs(threads) do
    parts[#parts + 1] = string.format('{"id": %d, "built": %d, "responses": %d, "failed": "%s"}',
      thread:get("id"), thread:get("built"), thread:get("responses"), thread:get("failed"))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p95_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "http_errors": %d, ' ..
    '"threads": [%s]}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.timeout, e.status, table.concat(parts, ", ")))
end
