package engine

import (
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"gitlab.com/imgform/imgform/internal/config"
)

// ctyJSON encodes a variable's value with its type, so 1 and "1" differ.
type ctyJSON struct{ v *config.Variable }

func (c ctyJSON) MarshalJSON() ([]byte, error) {
	return ctyjson.Marshal(c.v.Value, c.v.Type)
}
