#include "capstan/analysis/expr.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace capstan::analysis {

struct Expr::Node {
  enum class Kind { kLiteral, kVar, kIndex, kCall, kUnary, kBinary };
  Kind kind = Kind::kLiteral;
  Value literal;
  std::string name;  // variable, function or operator
  std::vector<std::shared_ptr<const Node>> args;
};

namespace {

using Node = Expr::Node;
using NodePtr = std::shared_ptr<const Node>;

struct Token {
  enum class Kind { kEnd, kNumber, kString, kIdent, kOp };
  Kind kind = Kind::kEnd;
  std::string text;
  double number = 0;
  size_t pos = 0;
};

std::string Describe(const Token& t) {
  switch (t.kind) {
    case Token::Kind::kEnd:
      return "the end";
    case Token::Kind::kString:
      return "a string";
    default:
      return absl::StrCat("'", t.text, "'");
  }
}

absl::StatusOr<std::vector<Token>> Lex(absl::string_view s) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    Token t;
    t.pos = i;
    if (absl::ascii_isdigit(static_cast<unsigned char>(c)) ||
        (c == '.' && i + 1 < s.size() &&
         absl::ascii_isdigit(static_cast<unsigned char>(s[i + 1])))) {
      size_t j = i;
      while (j < s.size() && (absl::ascii_isdigit(static_cast<unsigned char>(s[j])) ||
                              s[j] == '.' || s[j] == '_')) {
        ++j;
      }
      if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
        if (k < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[k]))) {
          j = k;
          while (j < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[j]))) ++j;
        }
      }
      std::string digits;
      for (char d : s.substr(i, j - i)) {
        if (d != '_') digits.push_back(d);
      }
      char* end = nullptr;
      t.number = std::strtod(digits.c_str(), &end);
      if (end == nullptr || *end != '\0') {
        return absl::InvalidArgumentError(
            absl::StrCat("position ", i, ": malformed number '", s.substr(i, j - i), "'"));
      }
      t.kind = Token::Kind::kNumber;
      t.text = std::string(s.substr(i, j - i));
      i = j;
    } else if (absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_' || c == '$') {
      size_t j = i;
      while (j < s.size() && (absl::ascii_isalnum(static_cast<unsigned char>(s[j])) ||
                              s[j] == '_' || s[j] == '$')) {
        ++j;
      }
      t.kind = Token::Kind::kIdent;
      t.text = std::string(s.substr(i, j - i));
      i = j;
    } else if (c == '"' || c == '\'') {
      size_t j = i + 1;
      std::string text;
      while (j < s.size() && s[j] != c) {
        if (s[j] == '\\' && j + 1 < s.size()) {
          const char e = s[j + 1];
          text.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
          j += 2;
          continue;
        }
        text.push_back(s[j++]);
      }
      if (j >= s.size()) {
        return absl::InvalidArgumentError(absl::StrCat("position ", i, ": unterminated string"));
      }
      t.kind = Token::Kind::kString;
      t.text = std::move(text);
      i = j + 1;
    } else {
      static constexpr absl::string_view kTwo[] = {"**", "==", "!=", "<=", ">=", "&&", "||"};
      t.kind = Token::Kind::kOp;
      for (absl::string_view op : kTwo) {
        if (s.substr(i, 2) == op) t.text = std::string(op);
      }
      if (t.text.empty()) {
        static constexpr absl::string_view kOne = "+-*/%^<>!()[],";
        if (kOne.find(c) == absl::string_view::npos) {
          return absl::InvalidArgumentError(
              absl::StrCat("position ", i, ": unexpected character '", std::string(1, c), "'"));
        }
        t.text = std::string(1, c);
      }
      i += t.text.size();
    }
    out.push_back(std::move(t));
  }
  Token end;
  end.pos = s.size();
  out.push_back(end);
  return out;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

  absl::StatusOr<NodePtr> ParseAll() {
    absl::StatusOr<NodePtr> n = Or();
    if (!n.ok()) return n;
    if (Peek().kind != Token::Kind::kEnd) {
      return Error(absl::StrCat("expected an operator or the end, found ", Describe(Peek())));
    }
    return n;
  }

 private:
  const Token& Peek() const { return tokens_[pos_]; }
  bool IsOp(absl::string_view op) const {
    return Peek().kind == Token::Kind::kOp && Peek().text == op;
  }
  bool IsWord(absl::string_view w) const {
    return Peek().kind == Token::Kind::kIdent && Peek().text == w;
  }
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("position ", Peek().pos, ": ", what));
  }

  // Depth guard: every recursion through Unary/Primary counts.
  struct Deeper {
    explicit Deeper(int* d) : d_(d) { ++*d_; }
    ~Deeper() { --*d_; }
    int* d_;
  };

  static NodePtr Binary(std::string op, NodePtr a, NodePtr b) {
    auto n = std::make_shared<Node>();
    n->kind = Node::Kind::kBinary;
    n->name = std::move(op);
    n->args = {std::move(a), std::move(b)};
    return n;
  }

  absl::StatusOr<NodePtr> Or() {
    absl::StatusOr<NodePtr> left = And();
    while (left.ok() && (IsOp("||") || IsWord("or"))) {
      ++pos_;
      absl::StatusOr<NodePtr> right = And();
      if (!right.ok()) return right;
      left = Binary("||", *left, *right);
    }
    return left;
  }

  absl::StatusOr<NodePtr> And() {
    absl::StatusOr<NodePtr> left = Comparison();
    while (left.ok() && (IsOp("&&") || IsWord("and"))) {
      ++pos_;
      absl::StatusOr<NodePtr> right = Comparison();
      if (!right.ok()) return right;
      left = Binary("&&", *left, *right);
    }
    return left;
  }

  bool IsComparison() const {
    return IsOp("==") || IsOp("!=") || IsOp("<") || IsOp("<=") || IsOp(">") || IsOp(">=");
  }

  absl::StatusOr<NodePtr> Comparison() {
    absl::StatusOr<NodePtr> left = Additive();
    if (!left.ok() || !IsComparison()) return left;
    const std::string op = Peek().text;
    ++pos_;
    absl::StatusOr<NodePtr> right = Additive();
    if (!right.ok()) return right;
    if (IsComparison()) {
      return Error(absl::StrCat("comparisons do not chain; write (a ", op,
                                " b) && (b ... c) instead of a ", op, " b ", Peek().text, " c"));
    }
    return Binary(op, *left, *right);
  }

  absl::StatusOr<NodePtr> Additive() {
    absl::StatusOr<NodePtr> left = Multiplicative();
    while (left.ok() && (IsOp("+") || IsOp("-"))) {
      const std::string op = Peek().text;
      ++pos_;
      absl::StatusOr<NodePtr> right = Multiplicative();
      if (!right.ok()) return right;
      left = Binary(op, *left, *right);
    }
    return left;
  }

  absl::StatusOr<NodePtr> Multiplicative() {
    absl::StatusOr<NodePtr> left = Power();
    while (left.ok() && (IsOp("*") || IsOp("/") || IsOp("%"))) {
      const std::string op = Peek().text;
      ++pos_;
      absl::StatusOr<NodePtr> right = Power();
      if (!right.ok()) return right;
      left = Binary(op, *left, *right);
    }
    return left;
  }

  absl::StatusOr<NodePtr> Power() {
    absl::StatusOr<NodePtr> base = Unary();
    if (!base.ok() || !(IsOp("**") || IsOp("^"))) return base;
    ++pos_;
    Deeper guard(&depth_);
    if (depth_ > kMaxExprDepth) return Error("expression nests too deeply");
    absl::StatusOr<NodePtr> exponent = Power();  // right-associative
    if (!exponent.ok()) return exponent;
    return Binary("**", *base, *exponent);
  }

  absl::StatusOr<NodePtr> Unary() {
    Deeper guard(&depth_);
    if (depth_ > kMaxExprDepth) return Error("expression nests too deeply");
    if (IsOp("!") || IsWord("not") || IsOp("-") || IsOp("+")) {
      const std::string op = Peek().text == "not" ? "!" : Peek().text;
      ++pos_;
      absl::StatusOr<NodePtr> operand = Unary();
      if (!operand.ok()) return operand;
      auto n = std::make_shared<Node>();
      n->kind = Node::Kind::kUnary;
      n->name = op;
      n->args = {*operand};
      return NodePtr(n);
    }
    return Postfix();
  }

  absl::StatusOr<NodePtr> Postfix() {
    absl::StatusOr<NodePtr> n = Primary();
    while (n.ok() && IsOp("[")) {
      ++pos_;
      absl::StatusOr<NodePtr> index = Or();
      if (!index.ok()) return index;
      if (!IsOp("]")) return Error(absl::StrCat("expected ']', found ", Describe(Peek())));
      ++pos_;
      auto idx = std::make_shared<Node>();
      idx->kind = Node::Kind::kIndex;
      idx->args = {*n, *index};
      n = NodePtr(idx);
    }
    return n;
  }

  absl::StatusOr<NodePtr> Primary() {
    Deeper guard(&depth_);
    if (depth_ > kMaxExprDepth) return Error("expression nests too deeply");
    const Token t = Peek();
    auto n = std::make_shared<Node>();
    switch (t.kind) {
      case Token::Kind::kEnd:
        return Error("expected a value, found the end");
      case Token::Kind::kNumber:
        ++pos_;
        n->literal = Value::Number(t.number);
        return NodePtr(n);
      case Token::Kind::kString:
        ++pos_;
        n->literal = Value::String(t.text);
        return NodePtr(n);
      case Token::Kind::kIdent:
        ++pos_;
        if (t.text == "true" || t.text == "false") {
          n->literal = Value::Bool(t.text == "true");
          return NodePtr(n);
        }
        if (t.text == "nil") return NodePtr(n);
        if (t.text == "and" || t.text == "or" || t.text == "not") {
          --pos_;
          return Error(absl::StrCat("expected a value, found ", Describe(t)));
        }
        if (IsOp("(")) {
          ++pos_;
          n->kind = Node::Kind::kCall;
          n->name = t.text;
          if (!IsOp(")")) {
            while (true) {
              absl::StatusOr<NodePtr> arg = Or();
              if (!arg.ok()) return arg;
              n->args.push_back(*arg);
              if (IsOp(",")) {
                ++pos_;
                continue;
              }
              break;
            }
          }
          if (!IsOp(")")) return Error(absl::StrCat("expected ')', found ", Describe(Peek())));
          ++pos_;
          return NodePtr(n);
        }
        n->kind = Node::Kind::kVar;
        n->name = t.text;
        return NodePtr(n);
      case Token::Kind::kOp:
        if (t.text == "(") {
          ++pos_;
          absl::StatusOr<NodePtr> inner = Or();
          if (!inner.ok()) return inner;
          if (!IsOp(")")) return Error(absl::StrCat("expected ')', found ", Describe(Peek())));
          ++pos_;
          return inner;
        }
        return Error(absl::StrCat("expected a value, found ", Describe(t)));
    }
    return Error("expected a value");
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
};

std::string TypeName(const Value& v) {
  if (v.is_null()) return "nil";
  if (v.is_bool()) return "bool";
  if (v.is_number()) return "number";
  if (v.is_string()) return "string";
  return "vector";
}

std::string FormatNumber(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "+Inf" : "-Inf";
  return absl::StrFormat("%.6g", d);
}

// A number, or a vector of exactly one number (Prometheus instant vectors of one series).
absl::StatusOr<double> AsNumber(const Value& v, absl::string_view what) {
  if (v.is_number()) return std::get<double>(v.v);
  if (v.is_vector() && std::get<std::vector<double>>(v.v).size() == 1) {
    return std::get<std::vector<double>>(v.v)[0];
  }
  if (v.is_vector()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " needs a number, got a vector of ",
                                                   std::get<std::vector<double>>(v.v).size(),
                                                   " elements (use result[0] or len(result))"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, " needs a number, got ", TypeName(v), " ", v.ToString()));
}

absl::StatusOr<bool> AsBool(const Value& v, absl::string_view what) {
  if (v.is_bool()) return std::get<bool>(v.v);
  return absl::InvalidArgumentError(
      absl::StrCat(what, " needs true or false, got ", TypeName(v), " ", v.ToString()));
}

absl::StatusOr<Value> Eval(const Node& n, const Env& env);

absl::StatusOr<Value> Call(const Node& n, const Env& env) {
  std::vector<Value> args;
  for (const NodePtr& a : n.args) {
    absl::StatusOr<Value> v = Eval(*a, env);
    if (!v.ok()) return v.status();
    args.push_back(std::move(*v));
  }
  auto want = [&](size_t count) -> absl::Status {
    if (args.size() == count) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(n.name, "() takes ", count, " argument",
                                                   count == 1 ? "" : "s", ", got ", args.size()));
  };
  if (n.name == "len") {
    if (absl::Status s = want(1); !s.ok()) return s;
    if (args[0].is_vector()) {
      return Value::Number(static_cast<double>(std::get<std::vector<double>>(args[0].v).size()));
    }
    if (args[0].is_string()) {
      return Value::Number(static_cast<double>(std::get<std::string>(args[0].v).size()));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("len() needs a vector or a string, got ", TypeName(args[0])));
  }
  if (n.name == "isNaN" || n.name == "isInf") {
    if (absl::Status s = want(1); !s.ok()) return s;
    // A vector is NaN (Inf) when any element is: the condition must not pass on it.
    std::vector<double> xs;
    if (args[0].is_vector()) {
      xs = std::get<std::vector<double>>(args[0].v);
    } else {
      absl::StatusOr<double> d = AsNumber(args[0], absl::StrCat(n.name, "()"));
      if (!d.ok()) return d.status();
      xs = {*d};
    }
    bool any = false;
    for (double x : xs) any = any || (n.name == "isNaN" ? std::isnan(x) : std::isinf(x));
    return Value::Bool(any);
  }
  if (n.name == "abs" || n.name == "float" || n.name == "int") {
    if (absl::Status s = want(1); !s.ok()) return s;
    if (n.name != "abs" && args[0].is_string()) {
      // float("0.31"): a number a web answer wrote as a string (expr-lang parses it too).
      double parsed = 0;
      if (!absl::SimpleAtod(absl::StripAsciiWhitespace(std::get<std::string>(args[0].v)),
                            &parsed)) {
        return absl::InvalidArgumentError(
            absl::StrCat(n.name, "(): \"", std::get<std::string>(args[0].v), "\" is not a number"));
      }
      return Value::Number(n.name == "int" ? std::trunc(parsed) : parsed);
    }
    absl::StatusOr<double> d = AsNumber(args[0], absl::StrCat(n.name, "()"));
    if (!d.ok()) return d.status();
    if (n.name == "abs") return Value::Number(std::fabs(*d));
    if (n.name == "int") return Value::Number(std::trunc(*d));
    return Value::Number(*d);
  }
  if (n.name == "min" || n.name == "max") {
    std::vector<double> xs;
    for (const Value& a : args) {
      if (a.is_vector()) {
        const auto& v = std::get<std::vector<double>>(a.v);
        xs.insert(xs.end(), v.begin(), v.end());
        continue;
      }
      absl::StatusOr<double> d = AsNumber(a, absl::StrCat(n.name, "()"));
      if (!d.ok()) return d.status();
      xs.push_back(*d);
    }
    if (xs.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(n.name, "() of nothing (an empty vector)"));
    }
    double out = xs[0];
    for (double x : xs) {
      if (std::isnan(x)) return Value::Number(x);  // NaN poisons, as in Prometheus
      out = n.name == "min" ? std::min(out, x) : std::max(out, x);
    }
    return Value::Number(out);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown function ", n.name, "() (known: len, isNaN, isInf, abs, min, max, float, int)"));
}

absl::StatusOr<Value> Compare(const std::string& op, const Value& a, const Value& b) {
  if (op == "==" || op == "!=") {
    bool eq = false;
    if ((a.is_number() || a.is_vector()) && (b.is_number() || b.is_vector())) {
      absl::StatusOr<double> x = AsNumber(a, op);
      absl::StatusOr<double> y = AsNumber(b, op);
      if (x.ok() && y.ok()) {
        eq = *x == *y;
      } else {
        eq = a == b;  // two vectors: element-wise equality
      }
    } else {
      eq = a == b;
    }
    return Value::Bool(op == "==" ? eq : !eq);
  }
  if (a.is_string() && b.is_string()) {
    const auto& x = std::get<std::string>(a.v);
    const auto& y = std::get<std::string>(b.v);
    if (op == "<") return Value::Bool(x < y);
    if (op == "<=") return Value::Bool(x <= y);
    if (op == ">") return Value::Bool(x > y);
    return Value::Bool(x >= y);
  }
  absl::StatusOr<double> x = AsNumber(a, absl::StrCat("'", op, "'"));
  if (!x.ok()) return x.status();
  absl::StatusOr<double> y = AsNumber(b, absl::StrCat("'", op, "'"));
  if (!y.ok()) return y.status();
  if (op == "<") return Value::Bool(*x < *y);
  if (op == "<=") return Value::Bool(*x <= *y);
  if (op == ">") return Value::Bool(*x > *y);
  return Value::Bool(*x >= *y);
}

absl::StatusOr<Value> Eval(const Node& n, const Env& env) {
  switch (n.kind) {
    case Node::Kind::kLiteral:
      return n.literal;
    case Node::Kind::kVar:
      if (n.name == "result") return env.result;
      if (n.name == "baseline") return env.baseline;
      return absl::InvalidArgumentError(
          absl::StrCat("unknown name ", n.name, " (known: result, baseline)"));
    case Node::Kind::kIndex: {
      absl::StatusOr<Value> base = Eval(*n.args[0], env);
      if (!base.ok()) return base;
      absl::StatusOr<Value> idx = Eval(*n.args[1], env);
      if (!idx.ok()) return idx;
      if (!base->is_vector()) {
        return absl::InvalidArgumentError(
            absl::StrCat("cannot index ", TypeName(*base), " ", base->ToString()));
      }
      absl::StatusOr<double> i = AsNumber(*idx, "an index");
      if (!i.ok()) return i.status();
      const auto& xs = std::get<std::vector<double>>(base->v);
      if (!std::isfinite(*i) || *i != std::trunc(*i)) {
        return absl::InvalidArgumentError(
            absl::StrCat("index ", FormatNumber(*i), " is not an integer"));
      }
      const double size = static_cast<double>(xs.size());
      const double at = *i < 0 ? size + *i : *i;
      if (at < 0 || at >= size) {
        return absl::InvalidArgumentError(
            absl::StrCat("index ", FormatNumber(*i), " out of range (len ", xs.size(), ")",
                         xs.empty() ? ": the query returned no series" : ""));
      }
      return Value::Number(xs[static_cast<size_t>(at)]);
    }
    case Node::Kind::kCall:
      return Call(n, env);
    case Node::Kind::kUnary: {
      absl::StatusOr<Value> v = Eval(*n.args[0], env);
      if (!v.ok()) return v;
      if (n.name == "!") {
        absl::StatusOr<bool> b = AsBool(*v, "'!'");
        if (!b.ok()) return b.status();
        return Value::Bool(!*b);
      }
      absl::StatusOr<double> d = AsNumber(*v, absl::StrCat("unary '", n.name, "'"));
      if (!d.ok()) return d.status();
      return Value::Number(n.name == "-" ? -*d : *d);
    }
    case Node::Kind::kBinary: {
      const std::string& op = n.name;
      absl::StatusOr<Value> a = Eval(*n.args[0], env);
      if (!a.ok()) return a;
      if (op == "&&" || op == "||") {
        absl::StatusOr<bool> x = AsBool(*a, absl::StrCat("'", op, "'"));
        if (!x.ok()) return x.status();
        if (op == "&&" && !*x) return Value::Bool(false);
        if (op == "||" && *x) return Value::Bool(true);
        absl::StatusOr<Value> b = Eval(*n.args[1], env);
        if (!b.ok()) return b;
        absl::StatusOr<bool> y = AsBool(*b, absl::StrCat("'", op, "'"));
        if (!y.ok()) return y.status();
        return Value::Bool(*y);
      }
      absl::StatusOr<Value> b = Eval(*n.args[1], env);
      if (!b.ok()) return b;
      if (op == "==" || op == "!=" || op == "<" || op == "<=" || op == ">" || op == ">=") {
        return Compare(op, *a, *b);
      }
      if (op == "+" && a->is_string() && b->is_string()) {
        return Value::String(std::get<std::string>(a->v) + std::get<std::string>(b->v));
      }
      absl::StatusOr<double> x = AsNumber(*a, absl::StrCat("'", op, "'"));
      if (!x.ok()) return x.status();
      absl::StatusOr<double> y = AsNumber(*b, absl::StrCat("'", op, "'"));
      if (!y.ok()) return y.status();
      if (op == "+") return Value::Number(*x + *y);
      if (op == "-") return Value::Number(*x - *y);
      if (op == "*") return Value::Number(*x * *y);
      if (op == "/") return Value::Number(*x / *y);
      if (op == "%") return Value::Number(std::fmod(*x, *y));
      return Value::Number(std::pow(*x, *y));
    }
  }
  return absl::InternalError("unknown expression node");
}

bool Any(const Node& n, Node::Kind kind, absl::string_view name) {
  if (n.kind == kind && n.name == name) return true;
  for (const NodePtr& a : n.args) {
    if (Any(*a, kind, name)) return true;
  }
  return false;
}

}  // namespace

std::string Value::ToString() const {
  if (is_null()) return "nil";
  if (is_bool()) return std::get<bool>(v) ? "true" : "false";
  if (is_number()) return FormatNumber(std::get<double>(v));
  if (is_string()) return absl::StrCat("\"", std::get<std::string>(v), "\"");
  const auto& xs = std::get<std::vector<double>>(v);
  std::vector<std::string> parts;
  for (double x : xs) parts.push_back(FormatNumber(x));
  return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
}

bool Value::HasNaN() const {
  if (is_number()) return std::isnan(std::get<double>(v));
  if (is_vector()) {
    for (double x : std::get<std::vector<double>>(v)) {
      if (std::isnan(x)) return true;
    }
  }
  return false;
}

absl::StatusOr<Expr> Expr::Parse(absl::string_view text) {
  if (text.size() > kMaxExprLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "condition is ", text.size(), " characters long (at most ", kMaxExprLength, ")"));
  }
  if (absl::StripAsciiWhitespace(text).empty()) {
    return absl::InvalidArgumentError("condition is empty");
  }
  absl::StatusOr<std::vector<Token>> tokens = Lex(text);
  if (!tokens.ok()) return tokens.status();
  Parser p(std::move(*tokens));
  absl::StatusOr<NodePtr> root = p.ParseAll();
  if (!root.ok()) return root.status();
  Expr e;
  e.root_ = std::move(*root);
  e.text_ = std::string(text);
  return e;
}

absl::StatusOr<Value> Expr::Evaluate(const Env& env) const { return Eval(*root_, env); }

absl::StatusOr<bool> Expr::EvaluateBool(const Env& env) const {
  absl::StatusOr<Value> v = Evaluate(env);
  if (!v.ok()) return v.status();
  if (!v->is_bool()) {
    return absl::InvalidArgumentError(
        absl::StrCat("condition must be true or false, got ", TypeName(*v), " ", v->ToString()));
  }
  return std::get<bool>(v->v);
}

bool Expr::Calls(absl::string_view name) const { return Any(*root_, Node::Kind::kCall, name); }

bool Expr::Reads(absl::string_view name) const { return Any(*root_, Node::Kind::kVar, name); }

}  // namespace capstan::analysis
