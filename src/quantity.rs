//! Kubernetes resource quantities (`100m`, `1.5Gi`, `2e3`), parsed exactly.
//!
//! Only what podvisor needs: the value in milli-units (CPU) and in whole units (bytes), both
//! rounded up as the API machinery's `MilliValue`/`Value` do. Pure; no IO.

use thiserror::Error;

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// Not of the form `<number><suffix>`.
    #[error("quantity {0:?} is not a number with an optional suffix (like 100m, 1Gi, 2e3)")]
    Syntax(String),
    /// Negative quantities are never valid resources.
    #[error("quantity {0:?} must not be negative")]
    Negative(String),
    /// The value does not fit in 64 bits.
    #[error("quantity {0:?} is too large")]
    TooLarge(String),
}

/// A parsed, non-negative quantity: `mantissa / 10^scale * multiplier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    mantissa: u128,
    /// Denominator as a power of ten (fraction digits, plus negative exponents).
    scale: u32,
    /// Numerator multiplier from the suffix.
    multiplier: u128,
}

fn parse(s: &str) -> Result<Parsed, QuantityError> {
    let syntax = || QuantityError::Syntax(s.to_owned());
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(syntax());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits: String = format!("{int_part}{frac_part}");
    let mantissa: u128 = digits
        .parse()
        .map_err(|_| QuantityError::TooLarge(s.to_owned()))?;
    let mut scale = u32::try_from(frac_part.len()).map_err(|_| syntax())?;
    let pow10 = |e: u32| {
        10u128
            .checked_pow(e)
            .ok_or(QuantityError::TooLarge(s.to_owned()))
    };
    let multiplier = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "n" => {
            scale += 9;
            1
        }
        "u" => {
            scale += 6;
            1
        }
        "m" => {
            scale += 3;
            1
        }
        "k" => 1_000,
        "M" => pow10(6)?,
        "G" => pow10(9)?,
        "T" => pow10(12)?,
        "P" => pow10(15)?,
        "E" => pow10(18)?,
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().map_err(|_| syntax())?;
            if e >= 0 {
                pow10(e.unsigned_abs())?
            } else {
                scale += e.unsigned_abs();
                1
            }
        }
        _ => return Err(syntax()),
    };
    if negative && mantissa != 0 {
        return Err(QuantityError::Negative(s.to_owned()));
    }
    Ok(Parsed {
        mantissa,
        scale,
        multiplier,
    })
}

fn scaled_ceil(s: &str, p: Parsed, factor: u128) -> Result<i64, QuantityError> {
    let too_large = || QuantityError::TooLarge(s.to_owned());
    let num = p
        .mantissa
        .checked_mul(p.multiplier)
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(too_large)?;
    // A scale beyond 10^38 leaves nothing but a rounding-up to 1 of a non-zero value.
    let value = match 10u128.checked_pow(p.scale) {
        Some(den) => num.div_ceil(den),
        None => u128::from(num > 0),
    };
    i64::try_from(value).map_err(|_| too_large())
}

/// The quantity in thousandths, rounded up: `100m` → 100, `1` → 1000, `1.5` → 1500.
pub fn milli_value(s: &str) -> Result<i64, QuantityError> {
    let p = parse(s.trim())?;
    scaled_ceil(s, p, 1000)
}

/// The quantity in whole units, rounded up: `1Ki` → 1024, `1.5` → 2, `100m` → 1.
pub fn value(s: &str) -> Result<i64, QuantityError> {
    let p = parse(s.trim())?;
    scaled_ceil(s, p, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_convert_to_millicores() {
        assert_eq!(milli_value("100m"), Ok(100));
        assert_eq!(milli_value("1"), Ok(1000));
        assert_eq!(milli_value("0.5"), Ok(500));
        assert_eq!(milli_value("2.25"), Ok(2250));
        assert_eq!(milli_value("1500u"), Ok(2));
        assert_eq!(milli_value("1e3"), Ok(1_000_000));
        assert_eq!(milli_value(".5"), Ok(500));
        assert_eq!(milli_value("+1"), Ok(1000));
    }

    #[test]
    fn memory_quantities_convert_to_bytes() {
        assert_eq!(value("128Mi"), Ok(128 * 1024 * 1024));
        assert_eq!(value("1Gi"), Ok(1 << 30));
        assert_eq!(value("1G"), Ok(1_000_000_000));
        assert_eq!(value("1.5Ki"), Ok(1536));
        assert_eq!(value("100m"), Ok(1));
        assert_eq!(value("0"), Ok(0));
        assert_eq!(value("12e-1"), Ok(2));
    }

    #[test]
    fn malformed_quantities_are_refused() {
        for bad in ["", "abc", "1x", "1.2.3", ".", "Mi", "1 Gi", "1ee"] {
            assert!(
                matches!(value(bad), Err(QuantityError::Syntax(_))),
                "{bad:?} was accepted"
            );
        }
        assert!(matches!(value("-1"), Err(QuantityError::Negative(_))));
        assert!(matches!(value("100Ei"), Err(QuantityError::TooLarge(_))));
    }
}
