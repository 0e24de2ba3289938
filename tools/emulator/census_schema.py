"""The Adult census schema (Studio's "Adult Census Income Binary Classification dataset"): columns, types, levels."""

from __future__ import annotations

LABEL = "income"
POSITIVE = ">50K"
NEGATIVE = "<=50K"

NUMERIC = ["age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
CATEGORICAL = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "sex",
               "native-country"]

COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", LABEL,
]
FEATURES = [c for c in COLUMNS if c != LABEL]

# Studio's column types as RRS reports them in ColumnTypes.
COLUMN_TYPES = {c: ("Int32" if c in NUMERIC else "String") for c in COLUMNS}

WORKCLASS = {"Private": 0.70, "Self-emp-not-inc": 0.08, "Local-gov": 0.065, "State-gov": 0.04,
             "Self-emp-inc": 0.035, "Federal-gov": 0.03, "?": 0.048, "Without-pay": 0.001, "Never-worked": 0.001}
EDUCATION = ["Preschool", "1st-4th", "5th-6th", "7th-8th", "9th", "10th", "11th", "12th", "HS-grad",
             "Some-college", "Assoc-voc", "Assoc-acdm", "Bachelors", "Masters", "Prof-school", "Doctorate"]
EDUCATION_WEIGHTS = [0.002, 0.005, 0.01, 0.02, 0.016, 0.029, 0.036, 0.013, 0.322, 0.224, 0.042, 0.033,
                     0.164, 0.053, 0.018, 0.013]
MARITAL = {"Married-civ-spouse": 0.46, "Never-married": 0.33, "Divorced": 0.136, "Separated": 0.031,
           "Widowed": 0.03, "Married-spouse-absent": 0.012, "Married-AF-spouse": 0.001}
OCCUPATION = {"Prof-specialty": 0.127, "Craft-repair": 0.126, "Exec-managerial": 0.125, "Adm-clerical": 0.116,
              "Sales": 0.112, "Other-service": 0.101, "Machine-op-inspct": 0.061, "?": 0.057,
              "Transport-moving": 0.049, "Handlers-cleaners": 0.042, "Farming-fishing": 0.031,
              "Tech-support": 0.029, "Protective-serv": 0.02, "Priv-house-serv": 0.004}
OCCUPATION_EFFECT = {"Exec-managerial": 0.9, "Prof-specialty": 0.75, "Tech-support": 0.5, "Sales": 0.35,
                     "Protective-serv": 0.45, "Craft-repair": 0.0, "Transport-moving": -0.1,
                     "Adm-clerical": -0.2, "Machine-op-inspct": -0.35, "Farming-fishing": -0.8,
                     "Handlers-cleaners": -0.8, "Other-service": -1.2, "Priv-house-serv": -2.0, "?": -0.7}
RACE = {"White": 0.854, "Black": 0.096, "Asian-Pac-Islander": 0.032, "Amer-Indian-Eskimo": 0.01, "Other": 0.008}
COUNTRY = {"United-States": 0.895, "Mexico": 0.02, "?": 0.018, "Philippines": 0.006, "Germany": 0.004,
           "Canada": 0.004, "India": 0.003, "England": 0.003, "Puerto-Rico": 0.0035, "Cuba": 0.003,
           "El-Salvador": 0.003, "China": 0.0025, "South": 0.0025, "Jamaica": 0.0025, "Italy": 0.0022,
           "Vietnam": 0.002, "Dominican-Republic": 0.0021, "Japan": 0.002, "Poland": 0.0018, "Columbia": 0.0018,
           "Guatemala": 0.002, "Taiwan": 0.0015, "Iran": 0.0013, "Haiti": 0.0013, "Portugal": 0.0011,
           "Nicaragua": 0.001, "Peru": 0.001, "Greece": 0.0009, "France": 0.0009, "Ecuador": 0.0009,
           "Ireland": 0.0007, "Hong": 0.0006, "Cambodia": 0.0006, "Trinadad&Tobago": 0.0006, "Laos": 0.0005,
           "Thailand": 0.0005, "Yugoslavia": 0.0005, "Outlying-US(Guam-USVI-etc)": 0.0004, "Hungary": 0.0004,
           "Honduras": 0.0004, "Scotland": 0.0004, "Holand-Netherlands": 0.0001}
