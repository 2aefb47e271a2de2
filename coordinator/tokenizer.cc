#include "coordinator/tokenizer.h"

#include <sentencepiece_processor.h>

namespace moe {

Tokenizer::~Tokenizer() = default;

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& path) {
  auto tok = std::unique_ptr<Tokenizer>(new Tokenizer());
  tok->sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = tok->sp_->Load(path);
  if (!status.ok())
    return NotFound(path + ": cannot load the SentencePiece tokenizer (" + status.ToString() +
                    "); pass --prompt-ids to run without one");
  return tok;
}

std::vector<int> Tokenizer::Encode(const std::string& text, bool add_bos) const {
  std::vector<int> ids;
  if (add_bos) ids.push_back(sp_->bos_id());
  std::vector<int> pieces;
  sp_->Encode(text, &pieces).IgnoreError();
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  return ids;
}

std::string Tokenizer::Decode(const std::vector<int>& ids) const {
  std::vector<int> kept;
  for (int id : ids)
    if (id >= 0 && id < sp_->GetPieceSize() && !sp_->IsControl(id)) kept.push_back(id);
  std::string text;
  sp_->Decode(kept, &text).IgnoreError();
  return text;
}

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int Tokenizer::bos_id() const { return sp_->bos_id(); }
int Tokenizer::eos_id() const { return sp_->eos_id(); }

}  // namespace moe
