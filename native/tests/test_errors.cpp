// Every bad input ends in a th::Error subclass with a message that names the problem, never a crash.
#include "doctest_torch.h"

#include <cstdio>
#include <fstream>

#include "backbone.h"
#include "config.h"
#include "device.h"
#include "errors.h"
#include "test_helpers.h"

using th_test::message_of;

using th_test::fixture;


TEST_CASE("loading errors") {
  CHECK(message_of<th::FileError>([] { th::load_backbone("/nonexistent/model.pt", {}); }).find("does not exist") !=
        std::string::npos);
  const std::string junk = "/tmp/th_test_not_an_archive.pt";
  std::ofstream(junk) << "this is not a zip file";
  CHECK(message_of<th::FileError>([&] { th::load_backbone(junk, {}); }).find("not a TorchScript archive") !=
        std::string::npos);
  // A zip header but a broken archive still fails cleanly.
  std::ofstream(junk) << "PK\x03\x04 broken";
  CHECK(message_of<th::FileError>([&] { th::load_backbone(junk, {}); }).find("could not be read") != std::string::npos);
  std::remove(junk.c_str());
  CHECK(message_of<th::ConfigError>([] { th::load_backbone(fixture("no-config.pt"), {}); }).find("no config.json") !=
        std::string::npos);
  CHECK(message_of<th::ConfigError>([] { th::load_backbone(fixture("bert-config.pt"), {}); }).find("'bert' is not supported") !=
        std::string::npos);
  CHECK(message_of<th::DeviceError>([] { th::load_backbone(fixture("tiny-gpt2.pt"), {"tpu", "float32"}); }).find("unknown device") !=
        std::string::npos);
  CHECK(message_of<th::DeviceError>([] { th::load_backbone(fixture("tiny-gpt2.pt"), {"cpu", "int8"}); }).find("unknown dtype") !=
        std::string::npos);
  if (!torch::cuda::is_available()) {
    CHECK(message_of<th::DeviceError>([] { th::load_backbone(fixture("tiny-gpt2.pt"), {"cuda", "float32"}); })
              .find("no CUDA support") != std::string::npos);
  }
}

TEST_CASE("forward input errors") {
  auto model = th::load_backbone(fixture("tiny-gpt2.pt"), {});
  auto ids = torch::randint(0, 101, {2, 5}, torch::kLong);
  CHECK(message_of<th::ShapeError>([&] { model->forward({ids.clone().fill_(101), {}, {0}, false}); }).find("token id 101") !=
        std::string::npos);
  CHECK(message_of<th::ShapeError>([&] { model->forward({ids.clone().fill_(-3), {}, {0}, false}); }).find("token id -3") !=
        std::string::npos);
  CHECK(message_of<th::ShapeError>([&] { model->forward({ids, torch::ones({2, 4}, torch::kLong), {0}, false}); })
            .find("does not match") != std::string::npos);
  CHECK(message_of<th::ShapeError>([&] { model->forward({ids.view({10}), {}, {0}, false}); }).find("[batch, seq]") !=
        std::string::npos);
  CHECK(message_of<th::ShapeError>([&] { model->forward({ids, torch::full({2, 5}, 2, torch::kLong), {0}, false}); })
            .find("only hold 0 and 1") != std::string::npos);
  CHECK(message_of<th::ValueError>([&] { model->forward({ids, {}, {5}, false}); }).find("out of range") != std::string::npos);
  CHECK(message_of<th::ValueError>([&] { model->forward({ids, {}, {-6}, false}); }).find("from -5 to 4") != std::string::npos);
  CHECK(message_of<th::ValueError>([&] { model->forward({ids, {}, {}, false}); }).find("nothing to compute") != std::string::npos);
  auto long_ids = torch::zeros({1, 65}, torch::kLong);
  CHECK(message_of<th::ShapeError>([&] { model->forward({long_ids, {}, {0}, false}); }).find("n_positions") != std::string::npos);
}

TEST_CASE("config parsing") {
  auto c = th::parse_config(R"({"model_type":"llama","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
      "num_attention_heads":2,"intermediate_size":16,"eos_token_id":[7,8],
      "rope_parameters":{"rope_theta":500000.0,"rope_type":"llama3","factor":8.0}})");
  CHECK(c.eos_token_id.value() == 7);
  CHECK(c.rope_theta == 500000.0);
  CHECK(c.rope_scaling.type == "llama3");
  CHECK(c.num_kv_heads == 2);
  auto q = th::parse_config(R"({"model_type":"qwen2","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
      "num_attention_heads":2,"intermediate_size":16})");
  CHECK(q.qkv_bias);
  CHECK_FALSE(q.o_bias);
  CHECK(q.sliding_window == 0);
  CHECK(message_of<th::ConfigError>([] { th::parse_config("{not json"); }).find("not valid JSON") != std::string::npos);
  CHECK(message_of<th::ConfigError>([] { th::parse_config(R"({"model_type":"gpt2","vocab_size":"x"})"); })
            .find("'vocab_size' must be an integer") != std::string::npos);
  CHECK(message_of<th::ConfigError>([] {
          th::parse_config(R"({"model_type":"llama","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
              "num_attention_heads":3,"num_key_value_heads":2,"intermediate_size":16})");
        }).find("multiple of num_key_value_heads") != std::string::npos);
  CHECK(message_of<th::ConfigError>([] {
          th::parse_config(R"({"model_type":"llama","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
              "num_attention_heads":2,"intermediate_size":16,"rope_scaling":{"rope_type":"yarn","factor":2}})");
        }).find("'yarn' is not supported") != std::string::npos);
}

TEST_CASE("thread count") {
  CHECK_THROWS_AS(th::set_num_threads(0), th::ValueError);
  const int n = th::num_threads();
  th::set_num_threads(1);
  CHECK(th::num_threads() == 1);
  th::set_num_threads(n);
}
