#include "protocol.h"

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace hsi::cf::proto {

namespace {
template <typename T>
void Put(std::vector<uint8_t>& b, T v) {
  uint8_t raw[sizeof(T)];
  std::memcpy(raw, &v, sizeof(T));
  b.insert(b.end(), raw, raw + sizeof(T));
}
template <typename T>
T Get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
}  // namespace

Writer::Writer(const Header& h) : Writer(h, std::vector<uint8_t>()) {}

Writer::Writer(const Header& h, std::vector<uint8_t>&& buf) : buf_(std::move(buf)) {
  buf_.clear();
  buf_.reserve(128);
  Put<uint32_t>(buf_, kMagic);
  Put<uint8_t>(buf_, kVersion);
  Put<uint8_t>(buf_, h.type);
  Put<uint16_t>(buf_, 0);
  Put<uint64_t>(buf_, h.request_id);
  Put<uint32_t>(buf_, h.conn);
  Put<uint32_t>(buf_, h.status);
}
Writer& Writer::U8(uint8_t v) {
  Put(buf_, v);
  return *this;
}
Writer& Writer::U32(uint32_t v) {
  Put(buf_, v);
  return *this;
}
Writer& Writer::U64(uint64_t v) {
  Put(buf_, v);
  return *this;
}
Writer& Writer::Str(absl::string_view s) {
  Put<uint16_t>(buf_, static_cast<uint16_t>(s.size()));
  buf_.insert(buf_.end(), s.begin(), s.end());
  return *this;
}

absl::StatusOr<Header> ParseHeader(absl::Span<const uint8_t> f) {
  if (f.size() < kHeaderSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CF message of ", f.size(), " bytes is shorter than the ", kHeaderSize, "-byte header"));
  }
  if (const uint32_t m = Get<uint32_t>(f.data()); m != kMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat("CF message: magic 0x", absl::Hex(m), " is not 0x", absl::Hex(kMagic)));
  }
  if (f[4] != kVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("CF message: version ", f[4], " is not ", kVersion));
  }
  if (const uint16_t flags = Get<uint16_t>(f.data() + 6); flags != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CF message: flags 0x", absl::Hex(flags), " must be 0"));
  }
  Header h;
  h.type = f[5];
  h.request_id = Get<uint64_t>(f.data() + 8);
  h.conn = Get<uint32_t>(f.data() + 16);
  h.status = Get<uint32_t>(f.data() + 20);
  return h;
}

bool Reader::Need(const char* what, size_t n) {
  if (!st_.ok()) return false;
  if (f_.size() - pos_ < n) {
    st_ = absl::InvalidArgumentError(
        absl::StrCat("CF message type ", f_[5], ": field ", what, " at offset ", pos_, " needs ", n,
                     " bytes, the frame has ", f_.size() - pos_, " left"));
    return false;
  }
  return true;
}
uint8_t Reader::U8(const char* what) {
  if (!Need(what, 1)) return 0;
  return f_[pos_++];
}
uint32_t Reader::U32(const char* what) {
  if (!Need(what, 4)) return 0;
  const uint32_t v = Get<uint32_t>(f_.data() + pos_);
  pos_ += 4;
  return v;
}
uint64_t Reader::U64(const char* what) {
  if (!Need(what, 8)) return 0;
  const uint64_t v = Get<uint64_t>(f_.data() + pos_);
  pos_ += 8;
  return v;
}
std::string Reader::Str(const char* what, size_t max) { return std::string(View(what, max)); }

absl::string_view Reader::View(const char* what, size_t max) {
  if (!Need(what, 2)) return {};
  const uint16_t n = Get<uint16_t>(f_.data() + pos_);
  if (n > max) {
    st_ = absl::InvalidArgumentError(absl::StrCat("CF message type ", f_[5], ": field ", what,
                                                  " at offset ", pos_, " is ", n,
                                                  " bytes, at most ", max, " allowed"));
    return {};
  }
  pos_ += 2;
  if (!Need(what, n)) return {};
  absl::string_view s(reinterpret_cast<const char*>(f_.data() + pos_), n);
  pos_ += n;
  return s;
}
absl::Status Reader::Done() const {
  if (!st_.ok()) return st_;
  if (pos_ != f_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("CF message type ", f_[5], ": ", f_.size() - pos_,
                     " bytes left over after the last field (offset ", pos_, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckName(const char* what, absl::string_view s, size_t max) {
  if (s.empty() || s.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", absl::CHexEscape(s), "\" must have 1..", max, " characters"));
  }
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-' &&
        c != '$' && c != '#' && c != '@') {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " \"", absl::CHexEscape(s), "\" may only use letters, digits and _ . - $ # @"));
    }
  }
  return absl::OkStatus();
}

std::vector<uint8_t> ErrorReply(const Header& req, const absl::Status& status) {
  Header h{static_cast<uint8_t>(req.type | kReplyBit), req.request_id, req.conn,
           static_cast<uint32_t>(status.code())};
  Writer w(h);
  w.Str(status.message().substr(0, 1024));
  auto f = w.frame();
  return {f.begin(), f.end()};
}

}  // namespace hsi::cf::proto
