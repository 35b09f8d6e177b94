-- wrk script: every request is a fresh Standard Webhooks delivery (unique webhook-id, current
-- timestamp, HMAC-SHA256 signature computed here with OpenSSL through LuaJIT's FFI).
-- args: <key hex> <body file> <path> [<ms between a connection's requests>]
local ffi = require("ffi")
ffi.cdef[[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
int EVP_EncodeBlock(unsigned char *t, const unsigned char *f, int n);
]]
local ok, crypto = pcall(ffi.load, "crypto")
if not ok then crypto = ffi.load("libcrypto.so.3") end

local b64buf = ffi.new("unsigned char[64]")
local function b64(ptr, n)
  local len = crypto.EVP_EncodeBlock(b64buf, ptr, n)
  return ffi.string(b64buf, len)
end

local key, body, path
local pause = 0
local counter = 0
local thread_id = tostring(math.random(1, 2 ^ 30))
local md = ffi.new("unsigned char[32]")
local md_len = ffi.new("unsigned int[1]")

function init(args)
  local hex = args[1]
  key = (hex:gsub("..", function(cc) return string.char(tonumber(cc, 16)) end))
  local f = assert(io.open(args[2], "rb"))
  body = f:read("*a")
  f:close()
  path = args[3]
  pause = tonumber(args[4] or "0")
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  thread_id = tostring(math.random(1, 2 ^ 30))
end

function request()
  counter = counter + 1
  local id = "wrk-" .. thread_id .. "-" .. counter
  local ts = tostring(os.time())
  local msg = id .. "." .. ts .. "." .. body
  crypto.HMAC(crypto.EVP_sha256(), key, #key, msg, #msg, md, md_len)
  local sig = "v1," .. b64(md, 32)
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["webhook-id"] = id,
    ["webhook-timestamp"] = ts,
    ["webhook-signature"] = sig,
  }, body)
end

-- Paced mode (bench/ingest.py --scrape-case): each connection waits this long before its next request.
function delay()
  return pause
end

local statuses = {}
function response(status, headers, resp_body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  -- wrk gives per-thread `response` state no way out except this line; the driver checks non-2xx too.
  io.write(string.format("errors.status %d\n", summary.errors.status))
end
