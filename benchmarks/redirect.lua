-- wrk script for the redirect benchmarks (see benchmarks/wrk.py). Configured by environment:
--   BENCH_LINKS        number of codes; each request GETs a random one of code(0) .. code(N-1)
--   BENCH_MIX          "uniform" (default: every code equally likely) or "zipf:S" (code(k-1) with probability
--                      proportional to k^-S, the skew of real traffic: a few codes get most requests)
--   BENCH_SEED         base seed of the per-thread random generators (runs are repeatable)
--   BENCH_CLICK_PARAM  query parameter of the click id in Location (default ct_click)
--   BENCH_IDS_FILE     if set, done() writes every click id seen in a 302's Location there, one per line
--   BENCH_SEQUENTIAL   if set to the number of wrk threads, codes are requested in order instead
--                      (thread t: code(t), code(t + threads), ...; wrapping around), to touch every code
--   BENCH_USER_AGENT   if set, every request carries it as User-Agent (the in-app browser scenario); a
--                      200 escape page's click id is then read from its body (the "Continue here" link)
-- done() prints one line "WRK_JSON {...}": request count, duration, latency percentiles, statuses, errors.
-- code(i) must match benchmarks/codes.py:code_for.

local ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
local MULTIPLIER = 2654435761
local MODULUS = 4294967296

local function code_for(i)
  local x = (i * MULTIPLIER) % MODULUS
  local digits = {}
  for k = 6, 1, -1 do
    local d = x % 62
    digits[k] = ALPHABET:sub(d + 1, d + 1)
    x = (x - d) / 62
  end
  return "bm" .. table.concat(digits)
end

-- main state --------------------------------------------------------------------------------------
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- thread states -----------------------------------------------------------------------------------
statuses = {}
ids = {}
n_ids = 0
local n_links, id_pattern, keep_ids, stride, next_index, headers, zipf_cdf

-- The running sums of k^-s for k = 1 .. n (one table per thread, 8 bytes a code): a request draws
-- u in [0, total) and takes the first k whose sum exceeds it (binary search).
local function zipf_table(n, s)
  local cdf, sum = {}, 0
  for k = 1, n do
    sum = sum + k ^ -s
    cdf[k] = sum
  end
  return cdf
end

local function zipf_index()
  local u = math.random() * zipf_cdf[n_links]
  local lo, hi = 1, n_links
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if zipf_cdf[mid] > u then hi = mid else lo = mid + 1 end
  end
  return lo - 1
end

function init(args)
  n_links = tonumber(os.getenv("BENCH_LINKS") or "1")
  math.randomseed(tonumber(os.getenv("BENCH_SEED") or "1") * 1000 + tid)
  local param = os.getenv("BENCH_CLICK_PARAM") or "ct_click"
  -- click ids are [A-Za-z0-9_-]: the match ends at the next '&', '#' or, in a page, '"'
  id_pattern = "[?&]" .. param:gsub("%p", "%%%0") .. "=([%w_%-]+)"
  keep_ids = os.getenv("BENCH_IDS_FILE") ~= nil
  stride = tonumber(os.getenv("BENCH_SEQUENTIAL") or "0")
  next_index = tid
  local agent = os.getenv("BENCH_USER_AGENT")
  headers = agent and { ["User-Agent"] = agent } or nil
  local mix = os.getenv("BENCH_MIX") or "uniform"
  local skew = mix:match("^zipf:([%d.]+)$")
  if skew then
    zipf_cdf = zipf_table(n_links, tonumber(skew))
  elseif mix ~= "uniform" then
    error("BENCH_MIX must be uniform or zipf:S, got " .. mix)
  end
end

function request()
  if stride > 0 then
    local i = next_index % n_links
    next_index = next_index + stride
    return wrk.format("GET", "/" .. code_for(i), headers)
  end
  local i = zipf_cdf and zipf_index() or math.random(0, n_links - 1)
  return wrk.format("GET", "/" .. code_for(i), headers)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if keep_ids and (status == 302 or status == 200) then
    local loc = headers["location"] or headers["Location"] or body
    local id = loc and loc:match(id_pattern)
    if id then
      n_ids = n_ids + 1
      ids[n_ids] = id
    end
  end
end

-- report (main state) ------------------------------------------------------------------------------
local function json_map(t)
  local parts = {}
  for k, v in pairs(t) do
    table.insert(parts, string.format('"%s": %d', tostring(k), v))
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
  local total = {}
  local ids_file = os.getenv("BENCH_IDS_FILE")
  local out = ids_file and io.open(ids_file, "w")
  local n_ids_total = 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
    if out then
      local thread_ids = thread:get("ids")
      local n = thread:get("n_ids")
      for i = 1, n do
        out:write(thread_ids[i], "\n")
      end
      n_ids_total = n_ids_total + n
    end
  end
  if out then out:close() end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"latency_us": {"mean": %.1f, "stdev": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p99.9": %d}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"statuses": %s, "ids_written": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    e.connect, e.read, e.write, e.status, e.timeout,
    json_map(total), n_ids_total))
end
