-- wrk script for bench/vs_etcd.py: the same key-value load for KeychainDB and for etcd.
--
--   wrk -t T -c C -d Ds -s bench/wrk_kv.lua URL -- SYSTEM PHASE KEYS VALUE_SIZE THREADS
--
-- SYSTEM is keychain or etcd, PHASE is write or read. Every request for every key is built once
-- in init(), so request() only hands out a prepared string: the script adds no work per request.
-- Each thread walks the whole key space from its own starting point, so the threads' writes are
-- spread over the keys. done() prints one line, "BENCH_RESULT {json}", that the driver parses.
--
-- Keys are "bench-%08d"; a key's value is the key and "/" repeated to VALUE_SIZE bytes. The
-- driver (bench/vs_etcd.py) derives the same names and values to check what was stored.
--
-- With WRK_KV_TARGETS="host:port,host:port,..." in the environment, thread i connects to target
-- i mod n instead of URL's host (a client balancer spreading connections over a cluster's members:
-- the driver gives each target the same number of threads).

local system, phase, keys, value_size, thread_count
local prepared = {}
local cursor = 1

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Standard base64 with padding, in plain arithmetic (LuaJIT is Lua 5.1: no bitwise operators).
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local d1 = math.floor(n / 262144) % 64
    local d2 = math.floor(n / 4096) % 64
    local d3 = math.floor(n / 64) % 64
    local d4 = n % 64
    out[#out + 1] = B64:sub(d1 + 1, d1 + 1) .. B64:sub(d2 + 1, d2 + 1)
      .. (b and B64:sub(d3 + 1, d3 + 1) or "=")
      .. (c and B64:sub(d4 + 1, d4 + 1) or "=")
  end
  return table.concat(out)
end

local function key_name(i)
  return string.format("bench-%08d", i)
end

local function value_for(key)
  local unit = key .. "/"
  return string.rep(unit, math.ceil(value_size / #unit)):sub(1, value_size)
end

local function build(i)
  local key = key_name(i)
  if system == "keychain" then
    local path = "/v1/kv/" .. key
    if phase == "write" then
      return wrk.format("PUT", path, { ["Content-Type"] = "application/octet-stream" }, value_for(key))
    end
    return wrk.format("GET", path .. "?consistency=strong")
  end
  local headers = { ["Content-Type"] = "application/json" }
  if phase == "write" then
    local body = '{"key":"' .. base64(key) .. '","value":"' .. base64(value_for(key)) .. '"}'
    return wrk.format("POST", "/v3/kv/put", headers, body)
  end
  return wrk.format("POST", "/v3/kv/range", headers, '{"key":"' .. base64(key) .. '"}')
end

local thread_counter = 0
local targets = nil

local function split_targets(text)
  local out = {}
  for host, port in text:gmatch("([^,:]+):(%d+)") do
    out[#out + 1] = { host = host, port = port }
  end
  return out
end

function setup(thread)
  thread:set("thread_index", thread_counter)
  local spread = os.getenv("WRK_KV_TARGETS")
  if spread and spread ~= "" then
    targets = targets or split_targets(spread)
    local t = targets[(thread_counter % #targets) + 1]
    thread.addr = wrk.lookup(t.host, t.port)[1]
  end
  thread_counter = thread_counter + 1
end

function init(args)
  system, phase = args[1], args[2]
  keys, value_size, thread_count = tonumber(args[3]), tonumber(args[4]), tonumber(args[5])
  if system ~= "keychain" and system ~= "etcd" then
    error("wrk_kv.lua: SYSTEM must be keychain or etcd, got " .. tostring(system))
  end
  if phase ~= "write" and phase ~= "read" then
    error("wrk_kv.lua: PHASE must be write or read, got " .. tostring(phase))
  end
  if not keys or keys < 1 or not value_size or value_size < 1 or not thread_count or thread_count < 1 then
    error("wrk_kv.lua: KEYS, VALUE_SIZE and THREADS must be positive integers")
  end
  for i = 1, keys do
    prepared[i] = build(i - 1)
  end
  cursor = math.floor(thread_index * keys / thread_count) + 1
end

function request()
  local r = prepared[cursor]
  cursor = cursor + 1
  if cursor > keys then
    cursor = 1
  end
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  print(string.format(
    'BENCH_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max))
end
