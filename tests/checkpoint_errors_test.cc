// Every way a checkpoint can be wrong must end in a clear Status error that names the file and
// the tensor or key at fault, never in a crash:
//   - SafetensorsFuzz: a seeded mutation test of ParseSafetensorsHeader (the project's fuzz test,
//     run in CI): each mutated file either parses with every invariant holding, or fails with a
//     message naming the file. 20000 mutations by default (about 0.5 s in Release);
//     MOE_FUZZ_ITERATIONS=N runs N per seed file for a longer search.
//   - SafetensorsHeader: one hand-made broken header per check in the parser, exact expectations.
//   - CheckpointErrors: broken copies of the real test models (weights, shards, index,
//     config.json, tokenizer.model) through the full loading path, Runtime::Open.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/checkpoint.h"
#include "common/mapped_file.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "coordinator/runtime.h"
#include "test_util.h"

namespace moe {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::ModelDir;
using Bytes = std::vector<uint8_t>;

// ---------------------------------------------------------------------------------------------
// Helpers: reading and writing files, building safetensors files byte by byte.

Bytes ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot read " << path;
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteBytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out) << "cannot write " << path;
}

void WriteText(const std::string& path, const std::string& text) {
  WriteBytes(path, Bytes(text.begin(), text.end()));
}

// [8-byte little-endian `length`][header][data]. `length` defaults to the header's size.
Bytes Assemble(const std::string& header, const Bytes& data,
               std::optional<uint64_t> length = std::nullopt) {
  const uint64_t n = length.value_or(header.size());
  Bytes out(8 + header.size() + data.size());
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  if (!header.empty()) std::memcpy(out.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
  return out;
}

struct TensorSpec {
  std::string name;
  std::string dtype;  // safetensors spelling: "F32", "BF16", ...
  std::vector<int64_t> shape;
  Bytes data;
};

// A valid safetensors file holding `tensors` back to back, in the given order.
Bytes BuildSafetensors(const std::vector<TensorSpec>& tensors) {
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}};
  Bytes data;
  for (const TensorSpec& t : tensors) {
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", json::array({data.size(), data.size() + t.data.size()})}};
    data.insert(data.end(), t.data.begin(), t.data.end());
  }
  return Assemble(header.dump(), data);
}

// The tensors of a (valid) safetensors file, in data order, with their bytes.
std::vector<TensorSpec> ReadTensors(const std::string& path) {
  const Bytes bytes = ReadBytes(path);
  auto header = ParseSafetensorsHeader(bytes.data(), bytes.size(), path);
  EXPECT_TRUE(header.ok()) << header.status().ToString();
  std::vector<TensorSpec> out;
  if (!header.ok()) return out;
  for (const SafetensorsEntry& e : header->entries) {
    const auto* p = bytes.data() + header->data_start;
    out.push_back({e.name, DTypeName(e.dtype), e.shape, Bytes(p + e.begin, p + e.end)});
  }
  return out;
}

// The header text and the data section of a valid file.
struct SplitFile {
  std::string header;
  Bytes data;
};

SplitFile Split(const Bytes& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
  return {std::string(bytes.begin() + 8, bytes.begin() + 8 + n), Bytes(bytes.begin() + 8 + n, bytes.end())};
}

// F32 bytes for `n` elements with recognisable values.
Bytes Floats(int n) {
  Bytes b(4 * n);
  for (int i = 0; i < n; ++i) {
    const float v = 0.25f * i - 1.0f;
    std::memcpy(&b[4 * i], &v, 4);
  }
  return b;
}

// A small valid file: three dtypes, a zero-element tensor and __metadata__.
Bytes HandBuiltFile() {
  return BuildSafetensors({{"embed.weight", "F32", {4, 3}, Floats(12)},
                           {"norm.weight", "BF16", {6}, Bytes(12, 0x3f)},
                           {"empty.bias", "F16", {0, 5}, {}},
                           {"proj.weight", "F16", {2, 2, 2}, Bytes(16, 0x3c)}});
}

// Parses `header` + `data` from an exactly sized buffer.
StatusOr<SafetensorsHeader> ParseText(const std::string& header, const Bytes& data = {},
                                      const std::string& label = "test.safetensors") {
  const Bytes bytes = Assemble(header, data);
  return ParseSafetensorsHeader(bytes.data(), bytes.size(), label);
}

// `s` failed with `code` and a message containing every string in `parts`.
::testing::AssertionResult FailsWith(const Status& s, StatusCode code,
                                     const std::vector<std::string>& parts) {
  if (s.ok()) return ::testing::AssertionFailure() << "expected an error, got OK";
  if (s.code() != code)
    return ::testing::AssertionFailure() << "wrong code " << static_cast<int>(s.code())
                                         << " (want " << static_cast<int>(code) << "): "
                                         << s.message();
  for (const std::string& p : parts)
    if (s.message().find(p) == std::string::npos)
      return ::testing::AssertionFailure() << "message does not mention '" << p
                                           << "': " << s.message();
  return ::testing::AssertionSuccess() << s.message();
}

template <typename T>
Status StatusOf(const StatusOr<T>& s) {
  return s.ok() ? Status::Ok() : s.status();
}

// ---------------------------------------------------------------------------------------------
// SafetensorsFuzz: random mutations of real and hand-built files.

// Applies one or more random mutations to a valid file: structural edits of the JSON (numbers,
// dtypes, missing keys, duplicated or moved entries), raw edits of the header text (digits,
// inserted and deleted bytes, duplicate keys), a stale length, edits of the 8-byte length field
// and truncation.
class Mutator {
 public:
  Mutator(const Bytes& seed_file, uint32_t seed) : rng_(seed) {
    SplitFile s = Split(seed_file);
    header_ = json::parse(s.header);
    data_ = std::move(s.data);
    for (auto it = header_.begin(); it != header_.end(); ++it)
      if (it.key() != "__metadata__") names_.push_back(it.key());
  }

  Bytes Next() {
    json h = header_;
    bool mutated = false;
    if (Chance(0.7)) {
      const int n = 1 + static_cast<int>(Below(2));
      for (int i = 0; i < n; ++i) MutateJson(h);
      mutated = true;
    }
    std::string text = h.dump();
    if (Chance(0.4) || !mutated) {
      MutateText(text);
      mutated = true;
    }
    uint64_t length = text.size();
    if (Chance(0.1)) length += static_cast<int64_t>(Below(9)) - 4;  // a stale length field
    Bytes file = Assemble(text, data_, length);
    if (Chance(0.25)) MutateBytes(file, text.size());
    return file;
  }

 private:
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  uint64_t Below(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) { return v[Below(v.size())]; }

  // A number (or a thing that is not one) for a shape or an offset.
  json RandomNumber() {
    const uint64_t size = data_.size();
    switch (Below(16)) {
      case 0: return 0;
      case 1: return 1;
      case 2: return -1;
      case 3: return Below(64);
      case 4: return Below(size + 1);
      case 5: return size;
      case 6: return size + 1 + Below(8);
      case 7: return uint64_t{1} << (30 + Below(34));  // 2^30 .. 2^63
      case 8: return std::numeric_limits<uint64_t>::max() - Below(4);
      case 9: return std::numeric_limits<int64_t>::min();
      case 10: return -static_cast<int64_t>(Below(uint64_t{1} << 40));
      case 11: return 2.5;
      case 12: return 1e30;
      case 13: return "8";
      case 14: return nullptr;
      default: return json::array({1});
    }
  }

  json RandomDtype() {
    static const std::vector<json> kDtypes = {
        "F32", "F16", "BF16", "I64", "I32", "U8", "F64", "BOOL", "F8_E4M3", "bf16", "f32",
        "", "F32 ", "F3", "BF166", "F32\u00e9", 16, nullptr, json::array(), json::object()};
    return Pick(kDtypes);
  }

  // A random tensor entry of `h`, or null when that one was dropped by an earlier mutation.
  json* RandomEntry(json& h) {
    auto it = h.find(Pick(names_));
    return it == h.end() ? nullptr : &*it;
  }

  // All entries of `j` (a shape or data_offsets) are integers >= 0.
  static bool AllUnsigned(const json& j) {
    if (!j.is_array()) return false;
    for (const auto& v : j)
      if (!v.is_number_unsigned()) return false;
    return true;
  }

  void MutateJson(json& h) {
    json* entry = RandomEntry(h);
    if (entry == nullptr || !entry->is_object()) return;
    json& e = *entry;
    switch (Below(14)) {
      case 0:  // one offset becomes a random value
        if (e["data_offsets"].is_array() && !e["data_offsets"].empty())
          e["data_offsets"][Below(e["data_offsets"].size())] = RandomNumber();
        break;
      case 1:  // one dimension becomes a random value
        if (e["shape"].is_array() && !e["shape"].empty())
          e["shape"][Below(e["shape"].size())] = RandomNumber();
        break;
      case 2:  // rank changes: a dimension added or removed
        if (e["shape"].is_array()) {
          if (Chance(0.5) && !e["shape"].empty()) e["shape"].erase(e["shape"].size() - 1);
          else for (uint64_t i = 0, n = 1 + Below(9); i < n; ++i) e["shape"].push_back(Below(3) + 1);
        }
        break;
      case 3:  // same numel, flattened: stays valid
        if (AllUnsigned(e["shape"])) {
          uint64_t numel = 1;
          for (const auto& d : e["shape"]) numel *= d.get<uint64_t>();
          e["shape"] = json::array({numel});
        }
        break;
      case 4:  // the dtype becomes a random string or a non-string
        e["dtype"] = RandomDtype();
        break;
      case 5:  // a required key goes missing
        e.erase(Pick(std::vector<std::string>{"dtype", "shape", "data_offsets"}));
        break;
      case 6: {  // the entry is duplicated under another name: overlap
        const std::string name = Pick(names_) + (Chance(0.5) ? ".copy" : "");
        h[name] = e;
        break;
      }
      case 7:  // the entry is dropped: stays valid
        h.erase(Pick(names_));
        break;
      case 8: {  // the entry moves by a few bytes
        if (!AllUnsigned(e["data_offsets"]) || e["data_offsets"].size() != 2) break;
        const int64_t delta = static_cast<int64_t>(Below(65)) - 32;
        for (auto& o : e["data_offsets"]) o = o.get<int64_t>() + delta;
        break;
      }
      case 9:  // the entry is not an object
        e = RandomNumber();
        break;
      case 10:  // data_offsets with the wrong arity or type
        e["data_offsets"] = Pick(std::vector<json>{json::array({0}), json::array({0, 4, 8}),
                                                    "0,4", json::array(), json::object()});
        break;
      case 11:  // __metadata__ changes: stays valid
        h["__metadata__"] = Pick(std::vector<json>{json::object(), json{{"format", "np"}}, 7,
                                                   json::array({1, 2})});
        break;
      case 12: {  // two entries swap offsets: valid when their sizes agree
        json* other = RandomEntry(h);
        if (other != nullptr && other->is_object() && other->contains("data_offsets") &&
            e.contains("data_offsets"))
          std::swap(e["data_offsets"], (*other)["data_offsets"]);
        break;
      }
      default:  // the entry shrinks to its first half, consistently: stays valid
        if (AllUnsigned(e["shape"]) && !e["shape"].empty() && AllUnsigned(e["data_offsets"]) &&
            e["data_offsets"].size() == 2) {
          const uint64_t d0 = e["shape"][0].get<uint64_t>();
          const uint64_t begin = e["data_offsets"][0].get<uint64_t>();
          const uint64_t end = e["data_offsets"][1].get<uint64_t>();
          if (d0 == 0 || end < begin) break;
          e["shape"][0] = d0 / 2;
          e["data_offsets"][1] = begin + (end - begin) / d0 * (d0 / 2);
        }
        break;
    }
  }

  void MutateText(std::string& text) {
    static const std::string kJsonBytes = "{}[]\":,-+.eE0123456789 \\";
    auto random_byte = [&]() -> char {
      return Chance(0.6) ? kJsonBytes[Below(kJsonBytes.size())] : static_cast<char>(Below(256));
    };
    switch (Below(6)) {
      case 0: {  // a run of digits becomes another number
        std::vector<std::pair<size_t, size_t>> runs;
        for (size_t i = 0; i < text.size();) {
          if (!std::isdigit(static_cast<unsigned char>(text[i]))) { ++i; continue; }
          size_t j = i;
          while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j]))) ++j;
          runs.push_back({i, j - i});
          i = j;
        }
        if (runs.empty()) break;
        static const std::vector<std::string> kNumbers = {
            "-1", "0", "-0", "1e3", "2.5", "18446744073709551615", "18446744073709551616",
            "9223372036854775808", "-9223372036854775809", "99999999999999999999999999999",
            "1099511627776", "4294967296", "007", "1E400", "NaN", "Infinity"};
        const auto [pos, len] = Pick(runs);
        text.replace(pos, len, Chance(0.8) ? Pick(kNumbers) : std::to_string(Below(1u << 20)));
        break;
      }
      case 1:  // bytes inserted
        for (uint64_t i = 0, n = 1 + Below(8); i < n; ++i)
          text.insert(text.begin() + Below(text.size() + 1), random_byte());
        break;
      case 2: {  // bytes deleted
        if (text.empty()) break;
        const size_t pos = Below(text.size());
        text.erase(pos, 1 + Below(8));
        break;
      }
      case 3:  // bytes overwritten
        for (uint64_t i = 0, n = 1 + Below(4); i < n && !text.empty(); ++i)
          text[Below(text.size())] = random_byte();
        break;
      case 4: {  // a duplicate key in the text (the JSON parser keeps the last)
        const std::string& name = Pick(names_);
        const std::string entry = "\"" + name + "\":" + header_[name].dump() + ",";
        text.insert(1, entry);
        break;
      }
      default: {  // a random slice of the header copied elsewhere
        if (text.empty()) break;
        const size_t pos = Below(text.size());
        const std::string slice = text.substr(pos, 1 + Below(64));
        text.insert(Below(text.size() + 1), slice);
        break;
      }
    }
  }

  void MutateBytes(Bytes& file, size_t header_size) {
    switch (Below(4)) {
      case 0:  // a bit of the length field flips
        file[Below(8)] ^= static_cast<uint8_t>(1u << Below(8));
        break;
      case 1:  // a byte of the length field is overwritten
        file[Below(8)] = static_cast<uint8_t>(Below(256));
        break;
      case 2:  // truncated inside the length field or the header
        file.resize(Below(8 + header_size + 1));
        break;
      default:  // truncated anywhere
        file.resize(Below(file.size() + 1));
        break;
    }
  }

  std::mt19937 rng_;
  json header_;
  Bytes data_;
  std::vector<std::string> names_;
};

// The fuzz oracle. Success: the data section starts right after the header, every entry lies
// inside it, entries are sorted and disjoint, and each byte range is numel * dtype size.
// Failure: a non-OK status (never kInternal) whose message names the file.
::testing::AssertionResult CheckOutcome(const Bytes& file, const StatusOr<SafetensorsHeader>& r,
                                        const std::string& label) {
  if (!r.ok()) {
    const Status& s = r.status();
    if (s.message().empty()) return ::testing::AssertionFailure() << "empty error message";
    if (s.message().find(label) == std::string::npos)
      return ::testing::AssertionFailure() << "message does not name the file: " << s.message();
    if (s.code() != StatusCode::kDataLoss && s.code() != StatusCode::kInvalidArgument)
      return ::testing::AssertionFailure() << "unexpected code: " << s.ToString();
    return ::testing::AssertionSuccess();
  }
  if (file.size() < 8) return ::testing::AssertionFailure() << "OK for a file of " << file.size();
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[i];
  const SafetensorsHeader& h = *r;
  if (h.data_start != 8 + n || h.data_start > file.size())
    return ::testing::AssertionFailure() << "data_start " << h.data_start << " for header length "
                                         << n << " in a file of " << file.size();
  const uint64_t data_size = file.size() - h.data_start;
  for (size_t i = 0; i < h.entries.size(); ++i) {
    const SafetensorsEntry& e = h.entries[i];
    if (e.name == "__metadata__") return ::testing::AssertionFailure() << "__metadata__ parsed";
    if (e.begin > e.end || e.end > data_size)
      return ::testing::AssertionFailure() << e.name << ": [" << e.begin << ", " << e.end
                                           << ") outside a data section of " << data_size;
    uint64_t numel = 1;
    for (int64_t d : e.shape) {
      if (d < 0) return ::testing::AssertionFailure() << e.name << ": negative dimension";
      numel *= static_cast<uint64_t>(d);
    }
    if (e.end - e.begin != numel * DTypeSize(e.dtype))
      return ::testing::AssertionFailure() << e.name << ": " << e.end - e.begin << " bytes for "
                                           << numel << " elements";
    if (i > 0 && (e.begin < h.entries[i - 1].begin || e.begin < h.entries[i - 1].end))
      return ::testing::AssertionFailure() << e.name << " overlaps or precedes "
                                           << h.entries[i - 1].name;
  }
  return ::testing::AssertionSuccess();
}

// How many mutated files to try per seed file; MOE_FUZZ_ITERATIONS overrides for longer runs.
int FuzzIterations(int fallback) {
  const char* env = std::getenv("MOE_FUZZ_ITERATIONS");
  return env != nullptr && std::atoi(env) > 0 ? std::atoi(env) : fallback;
}

void RunFuzz(const Bytes& seed_file, uint32_t seed, int iterations) {
  const std::string label = "fuzz-input.safetensors";
  Mutator mutator(seed_file, seed);
  int ok = 0, failed = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) {
    Bytes exact = mutator.Next();
    // Exactly sized: any read past the end is a heap overflow that a sanitizer or valgrind
    // reports (a vector's spare capacity after a truncation would hide it).
    if (exact.capacity() != exact.size()) exact = Bytes(exact.begin(), exact.end());
    auto r = ParseSafetensorsHeader(exact.data(), exact.size(), label);
    ASSERT_TRUE(CheckOutcome(exact, r, label))
        << "iteration " << i << " (seed " << seed << "), header text: "
        << std::string(exact.begin() + std::min<size_t>(8, exact.size()),
                       exact.begin() + std::min<size_t>(8 + 600, exact.size()));
    (r.ok() ? ok : failed)++;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Both outcomes must be common, or the mutations are too weak or too destructive.
  EXPECT_GT(ok, iterations / 50) << ok << " parsed, " << failed << " rejected";
  EXPECT_GT(failed, iterations / 2) << ok << " parsed, " << failed << " rejected";
  ::testing::Test::RecordProperty("parsed", ok);
  ::testing::Test::RecordProperty("rejected", failed);
  std::printf("[ fuzz     ] %d mutations: %d parsed, %d rejected, %.2f s\n", iterations, ok,
              failed, seconds);
}

// The real bf16 Mistral checkpoint (22 tensors, 2 KB header), mutated 12000 times.
TEST(SafetensorsFuzz, MutatedRealCheckpointNeverCrashes) {
  const Bytes file = ReadBytes(ModelDir("mistral-bf16") + "/model.safetensors");
  ASSERT_GT(file.size(), 1000u);
  ASSERT_TRUE(ParseSafetensorsHeader(file.data(), file.size(), "seed").ok());
  RunFuzz(file, 20240601, FuzzIterations(12000));
}

// A small hand-built file (F32, BF16, F16, a zero-element tensor), mutated 8000 times.
TEST(SafetensorsFuzz, MutatedHandBuiltFileNeverCrashes) {
  const Bytes file = HandBuiltFile();
  ASSERT_TRUE(ParseSafetensorsHeader(file.data(), file.size(), "seed").ok());
  RunFuzz(file, 7, FuzzIterations(8000));
}

// Every truncation of the hand-built file, byte by byte, is rejected (except the whole file).
TEST(SafetensorsFuzz, EveryTruncationIsRejected) {
  const Bytes file = HandBuiltFile();
  for (size_t n = 0; n < file.size(); ++n) {
    const Bytes cut(file.begin(), file.begin() + n);
    auto r = ParseSafetensorsHeader(cut.data(), cut.size(), "cut.safetensors");
    // Cutting only trailing bytes no tensor uses would be fine, but this file has none.
    ASSERT_FALSE(r.ok()) << "truncated to " << n << " of " << file.size() << " bytes";
    ASSERT_NE(r.status().message().find("cut.safetensors"), std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------------
// SafetensorsHeader: one broken header per check, with the exact code and message content.

const std::string kLabel = "test.safetensors";

// A header with one tensor 'w' of the given entry JSON.
std::string OneTensor(const std::string& entry) { return "{\"w\":" + entry + "}"; }

// That header over 16 data bytes fails with `code` and a message containing every part.
::testing::AssertionResult OneTensorFails(const std::string& entry, StatusCode code,
                                          const std::vector<std::string>& parts) {
  return FailsWith(StatusOf(ParseText(OneTensor(entry), Bytes(16, 0))), code, parts);
}

// The hand-built file parses to exactly its tensors, sorted by offset.
TEST(SafetensorsHeader, ValidFileParses) {
  const Bytes file = HandBuiltFile();
  auto r = ParseSafetensorsHeader(file.data(), file.size(), kLabel);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->entries.size(), 4u);
  EXPECT_EQ(r->entries[0].name, "embed.weight");
  EXPECT_EQ(r->entries[0].dtype, DType::kF32);
  EXPECT_EQ(r->entries[0].shape, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(r->entries[0].begin, 0u);
  EXPECT_EQ(r->entries[0].end, 48u);
  EXPECT_EQ(r->entries[1].name, "norm.weight");
  EXPECT_EQ(r->entries[1].dtype, DType::kBF16);
  EXPECT_EQ(r->entries[2].name, "empty.bias");
  EXPECT_EQ(r->entries[2].begin, r->entries[2].end);
  EXPECT_EQ(r->entries[3].name, "proj.weight");
  EXPECT_EQ(r->entries[3].dtype, DType::kF16);
  EXPECT_EQ(r->data_start + r->entries[3].end, file.size());
}

// Fewer than 8 bytes: no header length to read.
TEST(SafetensorsHeader, ShorterThanEightBytes) {
  for (size_t n : {0, 1, 7}) {
    const Bytes file(n, 0);
    EXPECT_TRUE(FailsWith(StatusOf(ParseSafetensorsHeader(file.data(), file.size(), kLabel)),
                          StatusCode::kDataLoss, {kLabel, "shorter than the 8-byte"}));
  }
}

// The length field points past the end of the file.
TEST(SafetensorsHeader, HeaderLengthPastEndOfFile) {
  const Bytes file = Assemble("{}", {}, 3);
  EXPECT_TRUE(FailsWith(StatusOf(ParseSafetensorsHeader(file.data(), file.size(), kLabel)),
                        StatusCode::kDataLoss, {kLabel, "header length 3", "past the end"}));
}

// A length over the reference implementation's 100 MiB limit, including values that would
// overflow 8 + length.
TEST(SafetensorsHeader, HeaderLengthOver100MiB) {
  for (uint64_t len : {(uint64_t{100} << 20) + 1, uint64_t{1} << 40,
                       std::numeric_limits<uint64_t>::max() - 7,
                       std::numeric_limits<uint64_t>::max()}) {
    const Bytes file = Assemble("{}", Bytes(64, 0), len);
    EXPECT_TRUE(FailsWith(StatusOf(ParseSafetensorsHeader(file.data(), file.size(), kLabel)),
                          StatusCode::kDataLoss, {kLabel, "100 MiB"}))
        << len;
  }
}

// Malformed JSON, including a header cut mid-string and a deeply nested one (no stack overflow).
TEST(SafetensorsHeader, BadJson) {
  for (const std::string& h : {std::string("{\"w\": {\"dtype\": \"F32\""), std::string("{\"w"),
                               std::string("not json"), std::string(""), std::string(200000, '[')})
    EXPECT_TRUE(FailsWith(StatusOf(ParseText(h)), StatusCode::kDataLoss,
                          {kLabel, "not valid JSON"}))
        << h.substr(0, 40);
}

// Valid JSON that is not an object.
TEST(SafetensorsHeader, HeaderIsAJsonArrayOrScalar) {
  for (const char* h : {"[]", "[{\"dtype\": \"F32\"}]", "42", "\"w\"", "null"})
    EXPECT_TRUE(FailsWith(StatusOf(ParseText(h)), StatusCode::kDataLoss,
                          {kLabel, "not a JSON object"}))
        << h;
}

// Each of the three required keys missing, or of the wrong type: the message names the tensor
// and the key.
TEST(SafetensorsHeader, EntryMissingARequiredKey) {
  EXPECT_TRUE(OneTensorFails(R"({"shape":[4],"data_offsets":[0,16]})", StatusCode::kDataLoss,
                             {kLabel, "'w'", "dtype"}));
  EXPECT_TRUE(OneTensorFails(R"({"dtype":5,"shape":[4],"data_offsets":[0,16]})",
                             StatusCode::kDataLoss, {kLabel, "'w'", "dtype"}));
  EXPECT_TRUE(OneTensorFails(R"({"dtype":"F32","data_offsets":[0,16]})", StatusCode::kDataLoss,
                             {kLabel, "'w'", "shape"}));
  EXPECT_TRUE(OneTensorFails(R"({"dtype":"F32","shape":[4]})", StatusCode::kDataLoss,
                             {kLabel, "'w'", "data_offsets"}));
  EXPECT_TRUE(OneTensorFails(R"({"dtype":"F32","shape":[4],"data_offsets":[16]})",
                             StatusCode::kDataLoss, {kLabel, "'w'", "data_offsets"}));
  EXPECT_TRUE(
      OneTensorFails("[1, 2]", StatusCode::kDataLoss, {kLabel, "'w'", "not a JSON object"}));
}

// An unsupported dtype: the message names it and lists the supported ones.
TEST(SafetensorsHeader, UnsupportedDtype) {
  EXPECT_TRUE(OneTensorFails(R"({"dtype":"I64","shape":[2],"data_offsets":[0,16]})",
                             StatusCode::kInvalidArgument,
                             {kLabel, "'w'", "I64", "F32, F16, BF16"}));
}

// Negative, fractional and overflowing dimensions.
TEST(SafetensorsHeader, BadShapeEntries) {
  for (const std::string shape : {"[-1]", "[2, -4]", "[2.5]", "[\"4\"]", "[18446744073709551615]",
                                  "[4294967296, 4294967296]", "[1,1,1,1,1,1,1,1,1]"})
    EXPECT_TRUE(OneTensorFails(R"({"dtype":"F32","shape":)" + shape + R"(,"data_offsets":[0,16]})",
                               StatusCode::kDataLoss, {kLabel, "'w'", "shape"}))
        << shape;
}

// data_offsets that end before they begin, or are negative.
TEST(SafetensorsHeader, OffsetsEndBeforeBegin) {
  EXPECT_TRUE(OneTensorFails(R"({"dtype":"F32","shape":[0],"data_offsets":[8,4]})",
                             StatusCode::kDataLoss, {kLabel, "'w'", "end before they begin"}));
  EXPECT_TRUE(OneTensorFails(R"({"dtype":"F32","shape":[4],"data_offsets":[-16,0]})",
                             StatusCode::kDataLoss, {kLabel, "'w'", "data_offsets"}));
}

// data_offsets that run past the data section (by one byte, and by 2^64 - 1).
TEST(SafetensorsHeader, OffsetsPastEndOfData) {
  EXPECT_TRUE(OneTensorFails(R"({"dtype":"F32","shape":[4],"data_offsets":[1,17]})",
                             StatusCode::kDataLoss,
                             {kLabel, "'w'", "[1, 17)", "past the end of the data section"}));
  EXPECT_TRUE(OneTensorFails(R"({"dtype":"F32","shape":[0],)"
                             R"("data_offsets":[18446744073709551615,18446744073709551615]})",
                             StatusCode::kDataLoss,
                             {kLabel, "'w'", "past the end of the data section"}));
}

// A byte range that disagrees with shape * dtype size.
TEST(SafetensorsHeader, ByteRangeDisagreesWithShape) {
  EXPECT_TRUE(OneTensorFails(R"({"dtype":"BF16","shape":[4],"data_offsets":[0,16]})",
                             StatusCode::kDataLoss, {kLabel, "'w'", "16 bytes", "(8 bytes)"}));
}

// Two tensors sharing bytes: the message names both.
TEST(SafetensorsHeader, OverlappingTensors) {
  const std::string h =
      R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})";
  EXPECT_TRUE(FailsWith(StatusOf(ParseText(h, Bytes(20, 0))), StatusCode::kDataLoss,
                        {kLabel, "'a'", "'b'", "overlap"}));
  // The same tensor twice under two names overlaps completely.
  const std::string same =
      R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  EXPECT_TRUE(FailsWith(StatusOf(ParseText(same, Bytes(16, 0))), StatusCode::kDataLoss,
                        {kLabel, "overlap"}));
}

// __metadata__ is not a tensor, whatever it holds.
TEST(SafetensorsHeader, MetadataIsIgnored) {
  for (const std::string meta : {R"({"format":"pt"})", R"({})", R"(7)", R"(["x"])"}) {
    auto r = ParseText(R"({"__metadata__":)" + meta +
                           R"(,"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})",
                       Bytes(16, 0));
    ASSERT_TRUE(r.ok()) << meta << ": " << r.status().ToString();
    ASSERT_EQ(r->entries.size(), 1u);
    EXPECT_EQ(r->entries[0].name, "w");
  }
}

// ---------------------------------------------------------------------------------------------
// CheckpointErrors: broken copies of the real test models, loaded through Runtime::Open.

class CheckpointErrors : public ::testing::Test {
 protected:
  // A fresh copy of tests/data/models/NAME; returns its path.
  std::string CopyModel(const std::string& name) {
    const fs::path dst = fs::path(root_) / name;
    fs::copy(ModelDir(name), dst, fs::copy_options::recursive);
    return dst.string();
  }

  // Runtime::Open's status: the whole loading path, as the CLI runs it.
  static Status Open(const std::string& dir) { return StatusOf(Runtime::Open({dir, 1})); }

  // Rewrites DIR/config.json after `edit`.
  static void EditConfig(const std::string& dir, const std::function<void(json&)>& edit) {
    auto text = ReadFileToString(dir + "/config.json");
    ASSERT_TRUE(text.ok());
    json c = json::parse(*text);
    edit(c);
    WriteText(dir + "/config.json", c.dump(2));
  }

  // Rewrites DIR/model.safetensors.index.json after `edit` of its weight_map.
  static void EditIndex(const std::string& dir, const std::function<void(json&)>& edit) {
    const std::string path = dir + "/model.safetensors.index.json";
    auto text = ReadFileToString(path);
    ASSERT_TRUE(text.ok());
    json index = json::parse(*text);
    edit(index["weight_map"]);
    WriteText(path, index.dump(2));
  }

  // Rewrites DIR/model.safetensors with the same tensors after `edit`.
  static void EditTensors(const std::string& dir,
                          const std::function<void(std::vector<TensorSpec>&)>& edit) {
    const std::string path = dir + "/model.safetensors";
    std::vector<TensorSpec> tensors = ReadTensors(path);
    ASSERT_FALSE(tensors.empty());
    edit(tensors);
    WriteBytes(path, BuildSafetensors(tensors));
  }

  testing::ScratchDir scratch_{"moe-checkpoint-errors"};
  const std::string root_ = scratch_.path();
};

// The unmodified copy loads: the breakages below are the only cause of each error.
TEST_F(CheckpointErrors, IntactCopiesLoad) {
  for (const char* name : {"mistral-bf16", "mixtral-bf16-sharded"}) {
    const Status s = Open(CopyModel(name));
    EXPECT_TRUE(s.ok()) << name << ": " << s.ToString();
  }
  // Rewriting the weights with the test's own writer changes nothing either.
  const std::string dir = fs::path(root_) / "rewritten";
  fs::copy(ModelDir("mistral-bf16"), dir);
  EditTensors(dir, [](std::vector<TensorSpec>&) {});
  EXPECT_TRUE(Open(dir).ok()) << Open(dir).ToString();
}

// A directory without weights: NotFound naming the directory.
TEST_F(CheckpointErrors, NoWeightsFileOrIndex) {
  const std::string dir = CopyModel("mistral-bf16");
  fs::remove(dir + "/model.safetensors");
  EXPECT_TRUE(FailsWith(StatusOf(Checkpoint::Open(dir)), StatusCode::kNotFound,
                        {dir, "no model.safetensors"}));
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kNotFound, {dir, "no model.safetensors"}));
}

// The model directory itself does not exist.
TEST_F(CheckpointErrors, NoModelDirectory) {
  const std::string dir = root_ + "/does-not-exist";
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kNotFound, {dir, "does not exist"}));
}

// The last 100 bytes cut off: the file and the tensor that runs past the end are named. An empty
// file and one cut inside its header are rejected too.
TEST_F(CheckpointErrors, TruncatedWeights) {
  const std::string dir = CopyModel("mistral-bf16");
  const std::string path = dir + "/model.safetensors";
  const std::vector<TensorSpec> tensors = ReadTensors(path);
  ASSERT_FALSE(tensors.empty());
  const std::string last = tensors.back().name;  // data order: the one at the end of the file
  Bytes bytes = ReadBytes(path);
  const Bytes original = bytes;
  bytes.resize(bytes.size() - 100);
  WriteBytes(path, bytes);
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kDataLoss,
                        {path, "'" + last + "'", "truncated or corrupt"}));

  WriteBytes(path, Bytes(original.begin(), original.begin() + 1000));
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kDataLoss, {path, "past the end of the file"}));

  WriteBytes(path, {});
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kDataLoss, {path, "shorter than"}));
}

// A tensor the model does not use: Checkpoint::Finish names it.
TEST_F(CheckpointErrors, ExtraUnknownTensor) {
  const std::string dir = CopyModel("mistral-bf16");
  EditTensors(dir, [](std::vector<TensorSpec>& t) {
    t.push_back({"model.extra.weight", "BF16", {4, 4}, Bytes(32, 0)});
  });
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kFailedPrecondition,
                        {dir, "'model.extra.weight'", "not part of the model"}));
}

// A tensor the model needs is missing: the error names it.
TEST_F(CheckpointErrors, MissingTensor) {
  for (const std::string name :
       {"model.layers.1.self_attn.k_proj.weight", "model.layers.0.mlp.up_proj.weight",
        "model.norm.weight", "lm_head.weight"}) {
    const std::string dir = CopyModel("mistral-bf16");
    EditTensors(dir, [&](std::vector<TensorSpec>& t) {
      std::erase_if(t, [&](const TensorSpec& s) { return s.name == name; });
    });
    EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kNotFound, {dir, "'" + name + "'", "missing"}));
    fs::remove_all(dir);
  }
}

// A tensor with the right bytes but the wrong shape: the error names the file, the tensor and
// both shapes.
TEST_F(CheckpointErrors, WrongShape) {
  const std::string dir = CopyModel("mistral-bf16");
  const std::string name = "model.layers.0.self_attn.q_proj.weight";
  EditTensors(dir, [&](std::vector<TensorSpec>& t) {
    for (TensorSpec& s : t)
      if (s.name == name) s.shape = {32, 128};
  });
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kFailedPrecondition,
                        {dir + "/model.safetensors", "'" + name + "'", "[32, 128]", "[64, 64]"}));
}

// The index lists a tensor that its shard does not hold.
TEST_F(CheckpointErrors, IndexListsTensorTheShardLacks) {
  const std::string dir = CopyModel("mixtral-bf16-sharded");
  EditIndex(dir, [](json& map) { map["model.ghost.weight"] = "model-00002-of-00003.safetensors"; });
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kDataLoss,
                        {dir + "/model-00002-of-00003.safetensors", "'model.ghost.weight'",
                         "missing from the file"}));
}

// The index names a shard file that does not exist.
TEST_F(CheckpointErrors, ShardFileMissing) {
  const std::string dir = CopyModel("mixtral-bf16-sharded");
  fs::remove(dir + "/model-00002-of-00003.safetensors");
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kNotFound,
                        {dir + "/model-00002-of-00003.safetensors", "cannot open"}));
}

// A shard holds a tensor that the index does not list for it.
TEST_F(CheckpointErrors, ShardTensorNotInIndex) {
  const std::string dir = CopyModel("mixtral-bf16-sharded");
  std::string shard;
  EditIndex(dir, [&](json& map) {
    shard = map["model.norm.weight"].get<std::string>();
    map.erase("model.norm.weight");
  });
  ASSERT_FALSE(shard.empty());
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kDataLoss,
                        {dir + "/" + shard, "'model.norm.weight'", "not listed"}));
}

// The index itself is broken: bad JSON, no weight_map, or a file name outside the directory.
TEST_F(CheckpointErrors, BrokenIndex) {
  const std::string dir = CopyModel("mixtral-bf16-sharded");
  const std::string index = dir + "/model.safetensors.index.json";
  WriteText(index, "{\"weight_map\": {");
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kDataLoss, {index, "not a valid JSON object"}));
  WriteText(index, "{\"metadata\": {}}");
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kDataLoss, {index, "weight_map"}));
  WriteText(index, R"({"weight_map": {"lm_head.weight": "../mistral-bf16/model.safetensors"}})");
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kDataLoss, {index, "../mistral-bf16"}));
}

// config.json is not JSON.
TEST_F(CheckpointErrors, ConfigBadJson) {
  const std::string dir = CopyModel("mistral-bf16");
  WriteText(dir + "/config.json", "{\"hidden_size\": 64,");
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kInvalidArgument,
                        {dir + "/config.json", "not a valid JSON object"}));
}

// config.json lacks a required key.
TEST_F(CheckpointErrors, ConfigMissingHiddenSize) {
  const std::string dir = CopyModel("mistral-bf16");
  EditConfig(dir, [](json& c) { c.erase("hidden_size"); });
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kInvalidArgument,
                        {dir + "/config.json", "missing key 'hidden_size'"}));
}

// config.json has an out-of-range or mistyped value.
TEST_F(CheckpointErrors, ConfigHiddenSizeOutOfRange) {
  const std::string dir = CopyModel("mistral-bf16");
  EditConfig(dir, [](json& c) { c["hidden_size"] = -1; });
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kInvalidArgument,
                        {dir + "/config.json", "'hidden_size' = -1", "out of range"}));
  EditConfig(dir, [](json& c) { c["hidden_size"] = "64"; });
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kInvalidArgument,
                        {dir + "/config.json", "'hidden_size'", "integer"}));
}

// More experts per token than experts.
TEST_F(CheckpointErrors, ConfigMoreExpertsPerTokenThanExperts) {
  const std::string dir = CopyModel("mixtral-bf16-sharded");
  EditConfig(dir, [](json& c) { c["num_experts_per_tok"] = 9; });
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kInvalidArgument,
                        {dir + "/config.json", "'num_experts_per_tok' = 9", "[1, 8]"}));
}

// Query heads that do not divide into key/value groups.
TEST_F(CheckpointErrors, ConfigHeadsNotMultipleOfKvHeads) {
  const std::string dir = CopyModel("mistral-bf16");
  EditConfig(dir, [](json& c) { c["num_key_value_heads"] = 3; });
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kInvalidArgument,
                        {dir + "/config.json", "num_attention_heads (4)",
                         "num_key_value_heads (3)"}));
}

// An architecture this runtime does not implement.
TEST_F(CheckpointErrors, ConfigUnsupportedArchitecture) {
  const std::string dir = CopyModel("mistral-bf16");
  EditConfig(dir, [](json& c) { c["architectures"] = json::array({"LlamaForCausalLM"}); });
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kInvalidArgument,
                        {dir + "/config.json", "'LlamaForCausalLM'", "not supported"}));
}

// Keys left out take transformers' defaults for the architecture; RoPE's base may sit in
// rope_parameters (transformers 5); a scaled RoPE is refused rather than ignored.
TEST(ModelConfigKeys, DefaultsRopeParametersAndScaling) {
  auto text = ReadFileToString(ModelDir("mixtral-f32") + "/config.json");
  ASSERT_TRUE(text.ok());
  const json original = json::parse(*text);
  auto parse = [&](const std::function<void(json&)>& edit) {
    json c = original;
    edit(c);
    return ParseModelConfig(c.dump(), "config.json");
  };
  auto without = [](std::initializer_list<const char*> keys) {
    return [keys](json& c) {
      for (const char* k : keys) c.erase(k);
    };
  };
  auto mixtral = parse(without({"rope_theta", "rms_norm_eps", "sliding_window"}));
  ASSERT_TRUE(mixtral.ok()) << mixtral.status().ToString();
  EXPECT_EQ(mixtral->rope_theta, 1e6);
  EXPECT_EQ(mixtral->rms_norm_eps, 1e-5f);
  EXPECT_EQ(mixtral->sliding_window, 0);
  auto mistral = parse([&](json& c) {
    without({"rope_theta", "rms_norm_eps", "sliding_window"})(c);
    c["architectures"] = json::array({"MistralForCausalLM"});
    c["max_position_embeddings"] = 32768;
  });
  ASSERT_TRUE(mistral.ok()) << mistral.status().ToString();
  EXPECT_EQ(mistral->rope_theta, 1e4);
  EXPECT_EQ(mistral->rms_norm_eps, 1e-6f);
  EXPECT_EQ(mistral->sliding_window, 4096);  // left out; null means none
  auto nested = parse([](json& c) {
    c.erase("rope_theta");
    c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 5e5}};
  });
  ASSERT_TRUE(nested.ok()) << nested.status().ToString();
  EXPECT_EQ(nested->rope_theta, 5e5);
  EXPECT_TRUE(FailsWith(StatusOf(parse([](json& c) {
                          c["rope_parameters"] = {{"rope_theta", 5e5}};  // beside 1e6
                        })),
                        StatusCode::kInvalidArgument, {"disagree"}));
  for (const json& scaled : {json{{"type", "linear"}, {"factor", 4.0}},
                             json{{"rope_type", "yarn"}, {"factor", 4.0}}, json{{"factor", 2.0}}})
    EXPECT_TRUE(FailsWith(StatusOf(parse([&](json& c) { c["rope_scaling"] = scaled; })),
                          StatusCode::kInvalidArgument, {"rope_scaling", "not plain RoPE"}))
        << scaled.dump();
  EXPECT_TRUE(FailsWith(StatusOf(parse([](json& c) {
                          c["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 1e6}};
                        })),
                        StatusCode::kInvalidArgument, {"rope_parameters", "not plain RoPE"}));
  EXPECT_TRUE(parse([](json& c) { c["rope_scaling"] = nullptr; }).ok());
}

// config.json that disagrees with the weights: fewer layers leaves layer 1's tensors unclaimed,
// a different width makes the first tensor's shape wrong.
TEST_F(CheckpointErrors, ConfigDisagreesWithWeights) {
  const std::string dir = CopyModel("mistral-bf16");
  EditConfig(dir, [](json& c) { c["num_hidden_layers"] = 1; });
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kFailedPrecondition,
                        {dir, "model.layers.1.", "not part of the model"}));
  EditConfig(dir, [](json& c) {
    c["num_hidden_layers"] = 2;
    c["vocab_size"] = 1000;
  });
  EXPECT_TRUE(FailsWith(Open(dir), StatusCode::kFailedPrecondition,
                        {"'model.embed_tokens.weight'", "[512, 64]", "[1000, 64]"}));
}

// A tokenizer.model of garbage bytes (or empty): a clear error naming the file.
TEST_F(CheckpointErrors, GarbageTokenizer) {
  const std::string dir = CopyModel("mistral-bf16");
  const std::string path = dir + "/tokenizer.model";
  std::mt19937 rng(1);
  Bytes garbage(4096);
  for (uint8_t& b : garbage) b = static_cast<uint8_t>(rng());
  for (const Bytes& content : {garbage, Bytes{}, Bytes{'h', 'i'}}) {
    WriteBytes(path, content);
    const Status s = Open(dir);
    ASSERT_FALSE(s.ok()) << content.size() << " bytes";
    EXPECT_NE(s.code(), StatusCode::kInternal);
    EXPECT_TRUE(FailsWith(s, s.code(), {path, "tokenizer"}));
  }
}

}  // namespace
}  // namespace moe
