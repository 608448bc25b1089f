-- Shared by the workload scripts. Configuration comes from the environment (the harness sets
-- it; defaults let a script run by hand against a mock on /v1):
--   BENCH_PREFIX  API prefix ("/v1"; "" for Prism, which serves the spec's paths as written)
--   BENCH_KEY     API key (sk-bench)          BENCH_BODY  JSON body of a create
--   BENCH_IDS     file of run ids, one a line  BENCH_PATH  path of an image GET
--   BENCH_RATE    total requests/s to hold (optional; see pacer below)
--   BENCH_LIMIT   stop each thread after this many responses (optional)
--   BENCH_THREADS and BENCH_CONNECTIONS, as given to wrk (for the pacer)
-- done() prints one line "BENCH_JSON {...}" that bench/loadgen.py parses.
local M = {}

M.prefix = os.getenv("BENCH_PREFIX") or "/v1"
M.key = os.getenv("BENCH_KEY") or "sk-bench"
M.body = os.getenv("BENCH_BODY")
  or '{"model":"openai/gpt-image-2","input":{"prompt":"a lighthouse at dawn",'
    .. '"aspect_ratio":"1:1","resolution":"1K"}}'

local function env_number(name)
  local value = os.getenv(name)
  return value and tonumber(value) or nil
end

function M.create_request()
  local headers = { ["Authorization"] = "Bearer " .. M.key, ["Content-Type"] = "application/json" }
  return wrk.format("POST", M.prefix .. "/runs", headers, M.body)
end

function M.poll_requests()
  local path = assert(os.getenv("BENCH_IDS"), "set BENCH_IDS to a file of run ids")
  local requests = {}
  for id in io.lines(path) do
    if id ~= "" then
      local headers = { ["Authorization"] = "Bearer " .. M.key }
      requests[#requests + 1] = wrk.format("GET", M.prefix .. "/runs/" .. id, headers)
    end
  end
  assert(#requests > 0, "no run ids in " .. path)
  return requests
end

-- Wall clock in milliseconds through LuaJIT's FFI (wrk's Lua has no sub-second clock).
local has_ffi, ffi = pcall(require, "ffi")
if has_ffi then
  ffi.cdef([[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock_id, bench_timespec *tp);
  ]])
end
local CLOCK_MONOTONIC = 1

function M.now_ms()
  local ts = ffi.new("bench_timespec")
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

-- Fixed rate, open-loop style: each thread hands out send slots 1/rate apart, in order, to
-- whichever connection asks next (wrk calls delay() before every request of a connection).
-- A connection waits for its slot; if the server falls behind, slots are late and counted in
-- `late` (more than 1 ms behind), and the achieved rate drops below the target. Without FFI
-- each connection waits a constant connections/rate instead (a closed loop, rate slightly low).
local late = 0

local function pacer(rate)
  local threads = env_number("BENCH_THREADS") or 1
  local interval = 1000 * threads / rate
  if not has_ffi then
    local constant = (env_number("BENCH_CONNECTIONS") or 1) * interval
    return function()
      return constant
    end
  end
  local next_at = nil
  return function()
    local now = M.now_ms()
    next_at = next_at or now
    local at = next_at
    next_at = next_at + interval
    if now - at > 1 then
      late = late + 1
    end
    return math.max(0, at - now)
  end
end

local threads = {}

local function setup(thread)
  threads[#threads + 1] = thread
end

local function thread_total(name)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + (thread:get(name) or 0)
  end
  return total
end

local function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "mean_us": %.1f, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "status_errors": %d, '
      .. '"timeouts": %d, "late": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, thread_total("late")
  ))
end

-- Installs setup/done, and delay (BENCH_RATE) and response (BENCH_LIMIT) when asked for.
function M.finish()
  _G.setup = setup
  _G.done = done
  local rate = env_number("BENCH_RATE")
  if rate then
    local wait = pacer(rate)
    _G.delay = function()
      local ms = wait()
      _G.late = late
      return ms
    end
  end
  local limit = env_number("BENCH_LIMIT")
  if limit then
    local seen = 0
    _G.response = function()
      seen = seen + 1
      if seen >= limit then
        wrk.thread:stop()
      end
    end
  end
end

return M
