-- Read scenarios of bench/api_load.py (search, customer detail, timeline, page): GET requests
-- taken in turn from a file of paths, one per line, each thread starting at its own place in
-- the list. The API key comes from the environment (BENCH_TOKEN), not the command line.
--
--   wrk -t 2 -c 20 -d 30s --timeout 60s -s bench/api_load_read.lua URL -- PATHS_FILE THREADS
--
-- With BENCH_THINK_MS set, each connection waits a random time (exponential, of that mean)
-- before each request, as a person reading the previous answer would; wrk's latencies leave
-- that time out. done() prints one line, "BENCH {json}": latency percentiles in
-- microseconds, requests, socket errors, and the responses that were not 2xx (with their
-- status codes).

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

local think = tonumber(os.getenv("BENCH_THINK_MS") or "0") or 0
if think > 0 then
  function delay()
    -- at most 4 s: uvicorn closes a connection idle for 5 s
    return math.min(math.floor(-think * math.log(1 - math.random())), 10 * think, 4000)
  end
end

local paths = {}
local position = 0
non2xx = 0
statuses = ""
local by_status = {}

function init(args)
  for line in io.lines(args[1]) do
    if line ~= "" then
      paths[#paths + 1] = line
    end
  end
  assert(#paths > 0, "no request in " .. args[1])
  local count = tonumber(args[2]) or 1
  position = math.floor((id - 1) * #paths / count)
  math.randomseed(id * 7919 + #paths)
  wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")
  wrk.headers["Accept"] = "application/json"
end

function request()
  position = position % #paths + 1
  return wrk.format("GET", paths[position])
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    by_status[status] = (by_status[status] or 0) + 1
    local parts = {}
    for code, n in pairs(by_status) do
      parts[#parts + 1] = code .. "=" .. n
    end
    statuses = table.concat(parts, " ")
  end
end

function done(summary, latency, requests)
  local bad = 0
  local codes = {}
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
    local text = thread:get("statuses") or ""
    if text ~= "" then
      codes[#codes + 1] = text
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p95_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "http_errors": %d, ' ..
    '"non2xx": %d, "statuses": "%s"}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.timeout, e.status, bad, table.concat(codes, " ")))
end
