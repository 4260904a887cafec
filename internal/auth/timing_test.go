package auth

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretsComparedInConstantTime reads this package's source and fails
// on any ==, != or bytes/strings comparison of a secret-looking operand (a
// token, key, secret, hash or digest), which would leak through its timing
// how much of a guess was right. Such comparisons must go through
// crypto/subtle (or hmac.Equal, inside the JWT library). Comparisons with
// a literal (an emptiness check) are fine.
func TestSecretsComparedInConstantTime(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	secretish := func(e ast.Expr) bool {
		var name string
		switch e := e.(type) {
		case *ast.Ident:
			name = e.Name
		case *ast.SelectorExpr:
			name = e.Sel.Name
		case *ast.IndexExpr, *ast.SliceExpr:
			return secretishExpr(e)
		case *ast.CallExpr:
			// What a call returns is named by the function.
			switch fn := e.Fun.(type) {
			case *ast.Ident:
				name = fn.Name
			case *ast.SelectorExpr:
				name = fn.Sel.Name
			}
		default:
			return false
		}
		return secretName(name)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BinaryExpr:
				if n.Op != token.EQL && n.Op != token.NEQ {
					return true
				}
				if isLiteral(n.X) || isLiteral(n.Y) {
					return true
				}
				checked++
				if secretish(n.X) || secretish(n.Y) {
					t.Errorf("%s: %s compares a secret with %s; use subtle.ConstantTimeCompare", fset.Position(n.Pos()), exprString(n), n.Op)
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				pkg, _ := sel.X.(*ast.Ident)
				if pkg == nil || (pkg.Name != "bytes" && pkg.Name != "strings") || (sel.Sel.Name != "Equal" && sel.Sel.Name != "Compare" && sel.Sel.Name != "EqualFold") {
					return true
				}
				for _, a := range n.Args {
					if secretish(a) && !isLiteral(a) {
						t.Errorf("%s: %s.%s compares a secret; use subtle.ConstantTimeCompare", fset.Position(n.Pos()), pkg.Name, sel.Sel.Name)
					}
				}
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("found no comparisons to check; is the test reading the package?")
	}
}

func secretName(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"tok", "secret", "hash", "sum", "digest", "key"} {
		if strings.Contains(n, s) && n != "kid" && !strings.HasSuffix(n, "prefix") {
			return true
		}
	}
	return false
}

func secretishExpr(e ast.Expr) bool {
	found := false
	ast.Inspect(e, func(n ast.Node) bool {
		if id, ok := n.(*ast.Ident); ok && secretName(id.Name) {
			found = true
		}
		return !found
	})
	return found
}

func isLiteral(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.BasicLit:
		return true
	case *ast.Ident:
		return e.Name == "nil" || e.Name == "true" || e.Name == "false"
	case *ast.CallExpr:
		// len(x) == n compares a length, not contents.
		if id, ok := e.Fun.(*ast.Ident); ok && id.Name == "len" {
			return true
		}
	}
	return false
}

func exprString(b *ast.BinaryExpr) string {
	name := func(e ast.Expr) string {
		switch e := e.(type) {
		case *ast.Ident:
			return e.Name
		case *ast.SelectorExpr:
			return e.Sel.Name
		}
		return "…"
	}
	return name(b.X) + " " + b.Op.String() + " " + name(b.Y)
}
