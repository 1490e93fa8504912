// Hostile inputs to the parsers of the core: JSON nested far deeper than any real file, config fields of the wrong
// type or out of range, and damaged TorchScript archives. Each must end in the documented error with a message
// that names the problem, never in a crash, a NaN or an error from deep inside libtorch.
#include "doctest_torch.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backbone.h"
#include "checkpoint.h"
#include "config.h"
#include "errors.h"
#include "json_strict.h"
#include "test_helpers.h"
#include "torchscript_check.h"

using th_test::fixture;
using th_test::message_of;

namespace {

namespace fs = std::filesystem;

bool has(const std::string& msg, const std::string& needle) { return msg.find(needle) != std::string::npos; }

std::string nested(size_t depth, const std::string& inner = "1") { return std::string(depth, '[') + inner + std::string(depth, ']'); }

std::string tmp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("th_hard_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary | std::ios::trunc) << text; }

std::string config_error(const std::string& text) { return message_of<th::ConfigError>([&] { th::parse_config(text); }); }

// A valid Llama / GPT-2 config with `patch` merged over it (null in the patch removes a key).
std::string llama(const std::string& patch) {
  auto j = nlohmann::json::parse(R"({"model_type":"llama","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
      "num_attention_heads":2,"intermediate_size":16})");
  j.merge_patch(nlohmann::json::parse(patch));
  return j.dump();
}
std::string gpt2(const std::string& patch) {
  auto j = nlohmann::json::parse(R"({"model_type":"gpt2","vocab_size":10,"n_embd":8,"n_layer":1,"n_head":2,"n_positions":16})");
  j.merge_patch(nlohmann::json::parse(patch));
  return j.dump();
}

}  // namespace

TEST_CASE("JSON: nesting is bounded while parsing, and only containers count") {
  nlohmann::json j;
  std::string error;
  CHECK(th::parse_json(nested(th::kJsonMaxDepth), j, error));
  CHECK_FALSE(th::parse_json(nested(th::kJsonMaxDepth + 1), j, error));
  CHECK(has(error, "nested more than 64 levels"));
  // The audit's case: 100k levels, as an array and as objects. Without the bound, destroying or dumping this
  // value recursed once per level.
  CHECK_FALSE(th::parse_json(nested(100000), j, error));
  CHECK(has(error, "nested more than 64 levels"));
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  objects += "1" + std::string(100000, '}');
  CHECK_FALSE(th::parse_json(objects, j, error));
  CHECK(has(error, "nested more than 64 levels"));
  // Unterminated: the parser fails on the syntax only after the bound has stopped it.
  CHECK_FALSE(th::parse_json(std::string(1000000, '['), j, error));
  // Brackets inside a string are text.
  CHECK(th::parse_json("{\"s\": \"" + std::string(100000, '[') + "\"}", j, error));
  CHECK(j["s"].get<std::string>().size() == 100000);
  // Duplicate keys: refused by default, kept (last wins) when asked for.
  CHECK_FALSE(th::parse_json(R"({"a": 1, "a": 2})", j, error));
  CHECK(has(error, "duplicate key 'a'"));
  th::JsonOptions lenient;
  lenient.reject_duplicate_keys = false;
  REQUIRE(th::parse_json(R"({"a": 1, "a": 2})", j, error, lenient));
  CHECK(j["a"] == 2);
  // A syntax error inside a long string: the quoted "last read" token is cut.
  CHECK_FALSE(th::parse_json("{\"s\": \"" + std::string(100000, 'x') + "\x01\"}", j, error));
  CHECK(error.size() < 400);
}

TEST_CASE("JSON: values are described, never serialized whole") {
  CHECK(th::describe_json(nlohmann::json(1.5)) == "1.5");
  CHECK(th::describe_json(nlohmann::json("x")) == "\"x\"");
  CHECK(th::describe_json(nlohmann::json::array({1, 2, 3, 4, 5})) == "[1, 2, 3, ...] (an array of 5)");
  CHECK(th::describe_json(nlohmann::json::parse(R"({"a": [[[1]]]})")) == "{\"a\": [[...]]}");
  const std::string big = th::describe_json(nlohmann::json(std::string(1000000, 'y')));
  CHECK(big.size() < 100);
  CHECK(has(big, "(1000000 bytes)"));
  // 60 levels, each with an array of 1000 strings of 1000 characters: 60 MB as JSON.
  nlohmann::json wide = nlohmann::json::array();
  for (int i = 0; i < 1000; ++i) wide.push_back(std::string(1000, 'z'));
  // Each level holds the one below and a copy of `wide` (nlohmann copies values: {deep, deep} would double per level).
  nlohmann::json deep = wide;
  for (int i = 0; i < 60; ++i) {
    nlohmann::json next = nlohmann::json::array();
    next.push_back(wide);
    next.push_back(std::move(deep));
    deep = std::move(next);
  }
  CHECK(th::describe_json(deep).size() < 400);
  CHECK(th::bounded_name(std::string(1000, 'n')).size() < 200);
  // A cut never splits a UTF-8 sequence: 'é' is two bytes.
  CHECK(th::bounded_name("a\xc3\xa9", 2) == "a... (3 bytes)");
}

TEST_CASE("config.json: nesting and top-level type") {
  CHECK(has(config_error(nested(100000)), "nested more than 64 levels"));
  CHECK(has(config_error(R"({"model_type":"gpt2","vocab_size":)" + nested(100000) + "}"), "nested more than 64 levels"));
  CHECK(has(config_error(R"({"model_type":"gpt2","task_specific_params":)" + nested(100000) + "}"), "nested more than 64 levels"));
  // Deep but within the bound, in a field we read: the message describes the value in a few characters.
  const std::string msg = config_error(gpt2(R"({"vocab_size":)" + nested(60) + "}"));
  CHECK(has(msg, "'vocab_size' must be an integer from 1 to"));
  CHECK(msg.size() < 300);
  CHECK(has(config_error("[[[]]]"), "must hold a JSON object, got [[[]]]"));
  CHECK(has(config_error("42"), "must hold a JSON object"));
  CHECK(has(config_error(R"({"n_layer":1.5,"n_embd":"x","n_head":-3})"), "no 'model_type'"));
  CHECK(has(config_error(R"({"model_type":")" + std::string(1000000, 'q') + "\"}"), "is not supported"));
  CHECK(config_error(R"({"model_type":")" + std::string(1000000, 'q') + "\"}").size() < 300);
  CHECK(has(config_error(R"({"model_type":7})"), "'model_type' must be a string, got 7"));
  // Python's json.load keeps the last of two equal keys; so does config.json parsing.
  CHECK(th::parse_config(R"({"model_type":"gpt2","vocab_size":5,"vocab_size":10,"n_embd":8,"n_layer":1,"n_head":2})").vocab_size == 10);
}

TEST_CASE("config.json: sizes are positive integers within bounds") {
  CHECK(has(config_error(gpt2(R"({"n_layer":1.5,"n_embd":"x","n_head":-3})")), "'n_embd' must be an integer from 1 to 1048576, got \"x\""));
  CHECK(has(config_error(gpt2(R"({"n_layer":1.5})")), "'n_layer' must be an integer from 1 to 4096, got 1.5"));
  CHECK(has(config_error(gpt2(R"({"n_head":-3})")), "'n_head' must be an integer from 1 to 16384, got -3"));
  CHECK(has(config_error(gpt2(R"({"n_embd":0})")), "'n_embd' must be an integer from 1"));
  CHECK(has(config_error(gpt2(R"({"n_embd":768.0})")), "'n_embd' must be an integer"));
  CHECK(has(config_error(gpt2(R"({"n_embd":true})")), "'n_embd' must be an integer"));
  CHECK(has(config_error(gpt2(R"({"n_embd":null})")), "no 'n_embd'"));
  // Aliases: transformers' GPT2Config maps hidden_size onto n_embd.
  CHECK(th::parse_config(gpt2(R"({"n_embd":null,"hidden_size":16})")).hidden_size == 16);
  CHECK(has(config_error(gpt2(R"({"vocab_size":1099511627776})")), "'vocab_size' must be an integer from 1 to 16777216"));
  // Above INT64_MAX nlohmann holds an unsigned value that a cast would wrap to -1.
  CHECK(has(config_error(gpt2(R"({"vocab_size":18446744073709551615})")), "'vocab_size' must be an integer"));
  CHECK(has(config_error(gpt2(R"({"n_positions":-1})")), "'n_positions' must be an integer from 1 to 268435456"));
  CHECK(has(config_error(gpt2(R"({"n_inner":0})")), "'n_inner'"));
  CHECK(th::parse_config(gpt2(R"({"n_inner":null})")).intermediate_size == 32);
  CHECK(has(config_error(gpt2(R"({"n_embd":10,"n_head":4})")), "n_embd 10 is not divisible by n_head 4"));
  CHECK(has(config_error(llama(R"({"num_hidden_layers":0})")), "'num_hidden_layers' must be an integer from 1"));
  CHECK(has(config_error(llama(R"({"intermediate_size":null})")), "no 'intermediate_size'"));
  CHECK(has(config_error(llama(R"({"max_position_embeddings":"4k"})")), "'max_position_embeddings' must be an integer"));
  // Heads: kv heads divide the heads; head_dim even; hidden divisible by heads unless head_dim is given.
  CHECK(has(config_error(llama(R"({"num_key_value_heads":4})")), "must be a multiple of num_key_value_heads"));
  CHECK(has(config_error(llama(R"({"num_key_value_heads":0})")), "'num_key_value_heads' must be an integer from 1"));
  CHECK(has(config_error(llama(R"({"hidden_size":9,"num_attention_heads":2})")), "not divisible by num_attention_heads"));
  CHECK(th::parse_config(llama(R"({"hidden_size":9,"num_attention_heads":2,"head_dim":4})")).head_dim == 4);
  CHECK(has(config_error(llama(R"({"head_dim":3})")), "head_dim must be even"));
  CHECK(has(config_error(llama(R"({"head_dim":-4})")), "'head_dim' must be an integer from 2"));
  CHECK(has(config_error(llama(R"({"hidden_size":6,"num_attention_heads":2})")), "head_dim must be even"));
}

TEST_CASE("config.json: epsilons, rope and windows are finite and in range") {
  for (const char* eps : {"-1", "0", "1.8e19", "1", "\"1e-5\""}) {
    INFO(eps);
    CHECK(has(config_error(gpt2(std::string(R"({"layer_norm_epsilon":)") + eps + "}")), "'layer_norm_epsilon' must be a finite number > 0 and < 1"));
    CHECK(has(config_error(llama(std::string(R"({"rms_norm_eps":)") + eps + "}")), "'rms_norm_eps' must be a finite number > 0 and < 1"));
  }
  // 1e999: nlohmann parses it to infinity (older versions) or refuses it as a number overflow (3.11, Debian 12's):
  // refused either way, naming the value. Written as text: the test's own llama() would parse it.
  const std::string llama_base = R"({"model_type":"llama","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":16,)";
  for (const char* field : {"rms_norm_eps", "rope_theta"}) {
    INFO(field);
    const std::string msg = config_error(llama_base + "\"" + field + "\":1e999}");
    CHECK((has(msg, "'" + std::string(field) + "' must be a finite number") || has(msg, "number overflow parsing '1e999'")));
  }
  CHECK(th::parse_config(llama(R"({"rms_norm_eps":1e-5})")).norm_eps == 1e-5);
  CHECK(has(config_error(llama(R"({"rope_theta":0})")), "'rope_theta' must be a finite number > 0, got 0"));
  CHECK(has(config_error(llama(R"({"rope_theta":-10000})")), "'rope_theta' must be a finite number > 0"));
  CHECK(th::parse_config(llama(R"({"rope_theta":500000})")).rope_theta == 500000.0);
  CHECK(has(config_error(llama(R"({"rope_parameters":{"rope_type":"default","rope_theta":0}})")), "'rope_parameters.rope_theta'"));
  CHECK(has(config_error(llama(R"({"rope_scaling":"linear"})")), "'rope_scaling' must be an object, got \"linear\""));
  CHECK(has(config_error(llama(R"({"rope_scaling":{"type":"linear","factor":0}})")), "'rope_scaling.factor' must be a finite number > 0"));
  CHECK(has(config_error(llama(R"({"rope_scaling":{"type":"linear","factor":-2}})")), "'rope_scaling.factor'"));
  CHECK(has(config_error(llama(R"({"rope_scaling":{"type":"linear"}})")), "no 'rope_scaling.factor'"));
  CHECK(has(config_error(llama(R"({"rope_scaling":{"type":7,"factor":2}})")), "'rope_scaling.type' must be a string"));
  CHECK(has(config_error(llama(R"({"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":4,"high_freq_factor":1}})")),
            "high_freq_factor (1) must be larger than low_freq_factor (4)"));
  CHECK(has(config_error(llama(R"({"rope_scaling":{"rope_type":"llama3","factor":8,"original_max_position_embeddings":0}})")),
            "'rope_scaling.original_max_position_embeddings' must be an integer from 1"));
  CHECK(has(config_error(llama(R"({"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":null,"high_freq_factor":-1}})")),
            "'rope_scaling.high_freq_factor'"));
  CHECK(has(config_error(llama(R"({"hidden_size":4,"rope_scaling":{"type":"dynamic","factor":2}})")), "dynamic rope scaling needs head_dim > 2"));
  CHECK(has(config_error(llama(R"({"partial_rotary_factor":0.5})")), "partial_rotary_factor"));
  // rope_scaling: null is no scaling.
  CHECK(th::parse_config(llama(R"({"rope_scaling":null})")).rope_scaling.type == "default");

  auto mistral = [](const std::string& patch) {
    auto j = nlohmann::json::parse(llama(patch));
    j["model_type"] = "mistral";
    return j.dump();
  };
  for (const char* w : {"\"4096\"", "{}", "[[1]]", "-1", "0", "2.5", "true"}) {
    INFO(w);
    CHECK(has(config_error(mistral(std::string(R"({"sliding_window":)") + w + "}")), "'sliding_window' must be"));
  }
  CHECK(th::parse_config(mistral(R"({"sliding_window":7})")).sliding_window == 7);
  // null is no window; absent is transformers' default of 4096.
  auto j = nlohmann::json::parse(mistral("{}"));
  j["sliding_window"] = nullptr;
  CHECK(th::parse_config(j.dump()).sliding_window == 0);
  CHECK(th::parse_config(mistral("{}")).sliding_window == 4096);
  auto qwen = [](const std::string& patch) {
    auto q = nlohmann::json::parse(llama(patch));
    q["model_type"] = "qwen2";
    return q.dump();
  };
  // Qwen2 checks the window even when use_sliding_window is false, and uses it only when true.
  CHECK(has(config_error(qwen(R"({"sliding_window":"x"})")), "'sliding_window' must be"));
  CHECK(th::parse_config(qwen(R"({"sliding_window":4096})")).sliding_window == 0);
  CHECK(has(config_error(qwen(R"({"use_sliding_window":"yes"})")), "'use_sliding_window' must be true or false"));
  CHECK(has(config_error(qwen(R"({"use_sliding_window":true,"sliding_window":0})")), "'sliding_window' must be null or a positive integer"));
  CHECK(has(config_error(qwen(R"({"max_window_layers":-1})")), "'max_window_layers' must be an integer from 0"));
  auto q = th::parse_config(qwen(R"({"use_sliding_window":true,"sliding_window":5,"max_window_layers":1})"));
  CHECK(q.window_for_layer(0) == 0);
  CHECK(q.window_for_layer(1) == 5);
}

TEST_CASE("config.json: booleans, strings and token ids") {
  CHECK(has(config_error(llama(R"({"tie_word_embeddings":"true"})")), "'tie_word_embeddings' must be true or false, got \"true\""));
  CHECK(has(config_error(llama(R"({"attention_bias":1})")), "'attention_bias' must be true or false"));
  CHECK(has(config_error(gpt2(R"({"scale_attn_weights":[]})")), "'scale_attn_weights' must be true or false"));
  CHECK(has(config_error(llama(R"({"hidden_act":["silu"]})")), "'hidden_act' must be a string"));
  CHECK(has(config_error(llama(R"({"eos_token_id":10})")), "'eos_token_id' must be a token id from 0 to 9"));
  CHECK(has(config_error(llama(R"({"bos_token_id":-1})")), "'bos_token_id' must be a token id"));
  CHECK(has(config_error(llama(R"({"eos_token_id":"2"})")), "'eos_token_id' must be a token id"));
  CHECK(has(config_error(llama(R"({"eos_token_id":[2,"3"]})")), "'eos_token_id' must be a token id"));
  CHECK(has(config_error(llama(R"({"eos_token_id":[2,[3]]})")), "'eos_token_id' must be a token id"));
  CHECK(has(config_error(llama(R"({"pad_token_id":1.0})")), "'pad_token_id' must be a token id"));
  CHECK(has(config_error(llama(R"({"pad_token_id":18446744073709551615})")), "'pad_token_id' must be a token id"));
  auto c = th::parse_config(llama(R"({"bos_token_id":1,"eos_token_id":[7,8,9],"pad_token_id":-1})"));
  CHECK(c.bos_token_id == std::optional<int64_t>(1));
  CHECK(c.eos_token_id == std::optional<int64_t>(7));
  CHECK(c.eos_token_ids == std::vector<int64_t>{7, 8, 9});
  CHECK_FALSE(c.pad_token_id.has_value());  // older Llama conversions write -1 for "no pad token"
  CHECK_FALSE(th::parse_config(llama(R"({"eos_token_id":[]})")).eos_token_id.has_value());
}

TEST_CASE("config_to_json gives the normalized fields") {
  auto g = nlohmann::json::parse(th::config_to_json(th::parse_config(gpt2(R"({"n_inner":null,"eos_token_id":9})"))));
  CHECK(g == nlohmann::json::parse(R"({"modelType":"gpt2","vocabSize":10,"hiddenSize":8,"numLayers":1,"numAttentionHeads":2,
      "numKeyValueHeads":2,"headDim":4,"intermediateSize":32,"maxPositionEmbeddings":16,"tieWordEmbeddings":true,
      "bosTokenId":null,"eosTokenId":9,"eosTokenIds":[9],"padTokenId":null,"normEps":1e-5,"activation":"gelu_new",
      "scaleAttnWeights":true})"));
  auto l = nlohmann::json::parse(th::config_to_json(th::parse_config(llama(
      R"({"num_key_value_heads":1,"eos_token_id":[2,3],"rope_theta":500000,
          "rope_scaling":{"rope_type":"llama3","factor":8,"original_max_position_embeddings":16}})"))));
  CHECK(l == nlohmann::json::parse(R"({"modelType":"llama","vocabSize":10,"hiddenSize":8,"numLayers":1,"numAttentionHeads":2,
      "numKeyValueHeads":1,"headDim":4,"intermediateSize":16,"maxPositionEmbeddings":2048,"tieWordEmbeddings":false,
      "bosTokenId":null,"eosTokenId":2,"eosTokenIds":[2,3],"padTokenId":null,"normEps":1e-6,"activation":"silu",
      "ropeTheta":500000.0,"ropeScaling":{"type":"llama3","factor":8.0,"lowFreqFactor":1.0,"highFreqFactor":4.0,
      "originalMaxPositionEmbeddings":16.0},"slidingWindow":null,"maxWindowLayers":0,"qkvBias":false,"oBias":false,
      "mlpBias":false})"));
}

TEST_CASE("every fixture config parses") {
  for (const char* name : {"tiny-gpt2", "tiny-llama", "tiny-llama-linear", "tiny-llama-dynamic", "tiny-llama3", "tiny-mistral", "tiny-qwen2"}) {
    INFO(name);
    auto ck = th::load_checkpoint(fixture(std::string(name) + ".pt"));
    CHECK(ck.config.vocab_size > 0);
    CHECK_NOTHROW(nlohmann::json::parse(th::config_to_json(ck.config)));
  }
  CHECK(th::load_checkpoint(fixture("tiny-qwen2.pt")).config.window_for_layer(1) == 3);
  CHECK(th::load_checkpoint(fixture("tiny-mistral.pt")).config.sliding_window == 4);
}

TEST_CASE("config.json and the shard index: deep nesting in a model folder") {
  const std::string d = tmp_dir("deep");
  fs::copy(fixture("hf-tiny-llama"), d, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  const std::string index = d + "/model.safetensors.index.json";
  REQUIRE(fs::exists(index));
  write_text(index, R"({"metadata":)" + nested(100000) + R"(,"weight_map":{}})");
  std::string msg = message_of<th::FileError>([&] { th::load_checkpoint(d); });
  CHECK(has(msg, "nested more than 64 levels"));
  CHECK(has(msg, "model.safetensors.index.json"));
  write_text(index, R"({"weight_map":{"model.norm.weight":)" + nested(20, "\"x\"") + "}}");
  msg = message_of<th::FileError>([&] { th::load_checkpoint(d); });
  CHECK(has(msg, "'model.norm.weight' is not a file name, got [[[...]]]"));
  write_text(d + "/config.json", R"({"model_type":"llama","x":)" + nested(100000) + "}");
  msg = message_of<th::ConfigError>([&] { th::load_checkpoint(d); });
  CHECK(has(msg, "nested more than 64 levels"));
  CHECK(has(msg, d + "/config.json"));
  fs::remove_all(d);
}

TEST_CASE("zip directory: sizes as the archive's own reader sees them") {
  // Torch writes ZIP64 end records; Python's zipfile (the rezipped copy) writes plain ones.
  for (const char* name : {"tiny-gpt2.pt", "tiny-gpt2-rezipped.pt"}) {
    INFO(name);
    auto entries = th::read_zip_directory(fixture(name));
    std::map<std::string, uint64_t> size;
    for (const auto& e : entries) size[e.name.substr(e.name.find('/') + 1)] = e.size;
    CHECK(size.at("data/0") == 101 * 64 * 4);  // wte.weight, [101, 64] float32
    CHECK(size.at("data/1") == 64 * 64 * 4);   // wpe.weight, [64, 64]
    CHECK(size.at("extra/config.json") == th::load_checkpoint(fixture(name)).config_json.size());
    CHECK(size.count("data.pkl") == 1);
  }
  CHECK(th::read_zip_directory(fixture("tiny-gpt2-truncated.pt")).size() == th::read_zip_directory(fixture("tiny-gpt2.pt")).size());
}

TEST_CASE("TorchScript: damaged archives are refused with ERR_TH_FILE naming the file") {
  // The same records written by another zip writer load, and hold the same weights.
  auto a = th::load_checkpoint(fixture("tiny-gpt2.pt"));
  auto b = th::load_checkpoint(fixture("tiny-gpt2-rezipped.pt"));
  CHECK(torch::equal(a.tensors.at("wte.weight"), b.tensors.at("wte.weight")));

  const std::string truncated = fixture("tiny-gpt2-truncated.pt");
  std::string msg = message_of<th::FileError>([&] { th::load_backbone(truncated, {}); });
  CHECK(has(msg, truncated));
  CHECK(has(msg, "record 'data/0' holds 100 bytes but its tensor storage needs 25856"));
  // The parity oracle goes through the same check.
  CHECK(has(message_of<th::FileError>([&] { th::TorchScriptModel m(truncated); }), "record 'data/0' holds 100 bytes"));

  msg = message_of<th::FileError>([&] { th::load_backbone(fixture("tiny-gpt2-dropped.pt"), {}); });
  CHECK(has(msg, "has no record 'data/1', which holds a tensor of 16384 bytes"));

  // Source that does not compile: the TorchScript compiler's error, as a FileError.
  msg = message_of<th::FileError>([&] { th::load_backbone(fixture("tiny-gpt2-badcode.pt"), {}); });
  CHECK(has(msg, "could not be read as a TorchScript archive"));
  CHECK(has(msg, "tiny-gpt2-badcode.pt"));

  // The archive cut at every 16th of its length: always a FileError, whichever part is missing.
  std::ifstream in(fixture("tiny-gpt2.pt"), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = (fs::temp_directory_path() / "th_hard_cut.pt").string();
  for (int i = 1; i < 16; ++i) {
    write_text(cut, bytes.substr(0, bytes.size() * i / 16));
    INFO(i);
    CHECK(has(message_of<th::FileError>([&] { th::load_backbone(cut, {}); }), cut));
  }
  // A central directory entry whose size points past the end of the file.
  std::string last_cd = bytes;
  const size_t cd = bytes.rfind("PK\x01\x02");
  REQUIRE(cd != std::string::npos);
  last_cd.replace(cd + 20, 4, std::string("\xf0\xff\xff\x7f", 4));  // compressed size of the last record
  write_text(cut, last_cd);
  CHECK(has(message_of<th::FileError>([&] { th::load_backbone(cut, {}); }), "outside the file"));
  std::remove(cut.c_str());
}

TEST_CASE("non-float weights are refused at load, naming the tensor") {
  const std::string msg = message_of<th::FileError>([] { th::load_backbone(fixture("int-weight-gpt2.pt"), {}); });
  CHECK(has(msg, "'h.0.ln_2.bias' is stored as Int"));
  CHECK(has(msg, "must be floating point"));
}
